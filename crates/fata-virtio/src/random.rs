//! Entropy: ChaCha20 seeded from the CPU's RDSEED or RDRAND, or else from the 32 bytes the host
//! tool passed on the command line (`fata.seed=`).

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use spin::{Mutex, Once};

static RNG: Mutex<Option<ChaCha20Rng>> = Mutex::new(None);
static FALLBACK_SEED: Once<[u8; 32]> = Once::new();

/// Keeps the command line's seed for a CPU without RDRAND.
pub fn set_fallback_seed(seed: [u8; 32]) {
    FALLBACK_SEED.call_once(|| seed);
}

/// Whether the CPU has RDRAND (CPUID.1:ECX bit 30).
pub fn has_rdrand() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0
}

/// 32 bytes from RDRAND, retrying a word the CPU could not supply at once.
fn rdrand_seed() -> Option<[u8; 32]> {
    let mut seed = [0; 32];
    for chunk in seed.chunks_mut(8) {
        let mut word = 0u64;
        // Intel's guidance: retry up to ten times before giving up.
        // SAFETY: the caller checked CPUID for RDRAND.
        let ok = (0..10).any(|_| unsafe { core::arch::x86_64::_rdrand64_step(&mut word) } == 1);
        if !ok {
            return None;
        }
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some(seed)
}

fn seed() -> [u8; 32] {
    if has_rdrand()
        && let Some(seed) = rdrand_seed()
    {
        return seed;
    }
    FALLBACK_SEED.get().copied().unwrap_or_else(|| {
        crate::fail(format_args!(
            "the CPU has no RDRAND and the command line no fata.seed: boot with `fata run`, or give QEMU `-cpu max`"
        ))
    })
}

/// Fills `buf` with ChaCha20 output.
pub fn fill(buf: &mut [u8]) {
    let mut rng = RNG.lock();
    rng.get_or_insert_with(|| ChaCha20Rng::from_seed(seed()))
        .fill_bytes(buf);
}
