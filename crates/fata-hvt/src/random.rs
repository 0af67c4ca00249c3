//! Entropy: ChaCha20 seeded from the 32 bytes the monitor read from the host's random source.
//!
//! RDRAND is not used: the monitor does not expose the host's CPUID, so the guest cannot know it is
//! there, and the host's generator seeds ChaCha20 at least as well.

use crate::boot;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use spin::Mutex;

static RNG: Mutex<Option<ChaCha20Rng>> = Mutex::new(None);

/// Fills `buf` with ChaCha20 output.
pub fn fill(buf: &mut [u8]) {
    let mut rng = RNG.lock();
    let rng =
        rng.get_or_insert_with(|| ChaCha20Rng::from_seed(boot::info().map_or([0; 32], |i| i.seed)));
    rng.fill_bytes(buf);
}
