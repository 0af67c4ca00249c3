//! ELF validation: one clear error per defect, and no panic on any input. No KVM needed.

mod common;

use common::*;
use fata_monitor::{ImageError, MAX_SEGMENTS, parse_image};

const LIMIT: u64 = 31 << 20;

fn text() -> Seg {
    load(CODE, PF_R | PF_X, vec![0x0f, 0x0b])
}

fn parse(image: &[u8]) -> Result<fata_monitor::Image, ImageError> {
    parse_image(image, LIMIT)
}

#[test]
fn a_valid_image_lists_its_segments() {
    let mut bss = load(DATA, PF_R | PF_W, vec![1; 10]);
    bss.mem_size = 0x3000;
    let image = parse(&elf(CODE, &[text(), bss])).unwrap();
    assert_eq!(image.entry, CODE);
    assert_eq!(image.segments.len(), 2);
    assert!(image.segments[0].executable && !image.segments[0].writable);
    assert!(image.segments[1].writable && !image.segments[1].executable);
    assert_eq!(image.end, DATA + 0x3000);
}

/// Whether an error is the one a case expects.
type Expect = fn(&ImageError) -> bool;

#[test]
fn each_defect_has_its_own_error() {
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (vec![], |e| matches!(e, ImageError::NotElf(_))),
        (b"#!/bin/sh\necho hi\n".to_vec(), |e| {
            matches!(e, ImageError::NotElf(_))
        }),
        (elf_with(CODE, 2, 183, &[text(), abi_note(1)]), |e| {
            *e == ImageError::WrongMachine(183)
        }),
        (elf_with(CODE, 3, 62, &[text(), abi_note(1)]), |e| {
            *e == ImageError::NotExecutable(3)
        }),
        (elf(CODE, &[load(CODE, 7, vec![0; 4])]), |e| {
            *e == ImageError::WritableAndExecutable(CODE)
        }),
        (elf(CODE, &[load(0x8000, PF_R | PF_X, vec![0; 4])]), |e| {
            *e == ImageError::BelowLoadAddress(0x8000)
        }),
        (
            elf(CODE, &[load(LIMIT - 2, PF_R | PF_X, vec![0; 4])]),
            |e| matches!(e, ImageError::PastRam { .. }),
        ),
        (
            elf(CODE, &[load(u64::MAX - 1, PF_R | PF_X, vec![0; 4])]),
            |e| {
                matches!(
                    e,
                    ImageError::BadSegment { .. } | ImageError::PastRam { .. }
                )
            },
        ),
        (
            elf(CODE, &[text(), load(CODE + 0x800, PF_R, vec![0; 4])]),
            |e| matches!(e, ImageError::Overlap(..)),
        ),
        (
            elf(DATA, &[text(), load(DATA, PF_R | PF_W, vec![0; 4])]),
            |e| *e == ImageError::EntryNotExecutable(DATA),
        ),
        (elf(0, &[text()]), |e| {
            *e == ImageError::EntryNotExecutable(0)
        }),
        (elf_with(CODE, 2, 62, &[text()]), |e| {
            *e == ImageError::NoAbiNote
        }),
        (elf_with(CODE, 2, 62, &[text(), abi_note(99)]), |e| {
            *e == ImageError::AbiMismatch(99)
        }),
        (elf(CODE, &[]), |e| *e == ImageError::NoSegments),
        (elf(CODE, &[text(), Seg { kind: 3, ..text() }]), |e| {
            *e == ImageError::Dynamic
        }),
        (elf(CODE, &[text(), Seg { kind: 7, ..text() }]), |e| {
            *e == ImageError::ThreadLocal
        }),
        (elf(CODE, &vec![text(); MAX_SEGMENTS + 1]), |e| {
            matches!(e, ImageError::TooManySegments(_))
        }),
        (
            {
                let mut s = text();
                s.mem_size = 1;
                elf(CODE, &[s])
            },
            |e| matches!(e, ImageError::BadSegment { .. }),
        ),
    ];
    for (i, (image, expected)) in cases.iter().enumerate() {
        let err = parse(image).expect_err(&format!("case {i} must be refused"));
        assert!(expected(&err), "case {i}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn truncation_anywhere_is_an_error_not_a_panic() {
    let image = elf(CODE, &[text(), load(DATA, PF_R | PF_W, vec![5; 300])]);
    assert!(parse(&image).is_ok());
    for len in 0..image.len() {
        assert!(
            parse(&image[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // A cheap deterministic stand-in for the fuzz target: flip every byte of the headers.
    let image = elf(CODE, &[text(), load(DATA, PF_R | PF_W, vec![5; 300])]);
    let headers = 64 + 56 * 3;
    for at in 0..headers {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bad = image.clone();
            bad[at] = value;
            let _ = parse(&bad);
        }
    }
}

/// A `PT_NOTE` segment holding `notes` back to back, as `.note.fata` holds them.
fn notes(notes: &[Vec<u8>]) -> Seg {
    let data = notes.concat();
    Seg {
        kind: PT_NOTE,
        addr: 0,
        flags: PF_R,
        mem_size: data.len() as u64,
        data,
    }
}

#[test]
fn the_manifest_note_is_read_from_images_and_other_executables() {
    use fata_device_spec::manifest::{Device, Kind, Manifest, ManifestError};
    use fata_monitor::read_manifest;

    let manifest = Manifest::new(
        vec![
            Device::new(Kind::Net, "service"),
            Device::new(Kind::Block, "disk"),
        ],
        1000,
    )
    .unwrap();
    let abi = abi_note(fata_hvt_abi::ABI_VERSION).data;
    let with_manifest = elf_with(
        CODE,
        2,
        62,
        &[text(), notes(&[abi.clone(), manifest.to_note()])],
    );
    assert_eq!(read_manifest(&with_manifest), Ok(Some(manifest.clone())));
    assert!(
        parse(&with_manifest).is_ok(),
        "the manifest sits beside the ABI note"
    );
    assert_eq!(read_manifest(&elf(CODE, &[text()])), Ok(None));
    // A unix executable (ET_DYN) carries the same note, in its own segment.
    let unix = elf_with(CODE, 3, 62, &[text(), notes(&[manifest.to_note()])]);
    assert_eq!(read_manifest(&unix), Ok(Some(manifest.clone())));

    let twice = elf(
        CODE,
        &[
            text(),
            notes(&[manifest.to_note()]),
            notes(&[manifest.to_note()]),
        ],
    );
    assert_eq!(read_manifest(&twice), Err(ImageError::RepeatedManifest));
    let mut newer = manifest.to_note();
    newer[20] = 2;
    let newer = elf(CODE, &[text(), notes(&[newer])]);
    assert_eq!(
        read_manifest(&newer),
        Err(ImageError::BadManifest(ManifestError::Version(2)))
    );
    assert!(matches!(
        read_manifest(b"#!/bin/sh\n"),
        Err(ImageError::NotElf(_))
    ));
    for len in 0..with_manifest.len() {
        let _ = read_manifest(&with_manifest[..len]);
    }
    for at in 0..64 + 56 * 2 {
        let mut bad = with_manifest.clone();
        bad[at] ^= 0xff;
        let _ = read_manifest(&bad);
    }
}
