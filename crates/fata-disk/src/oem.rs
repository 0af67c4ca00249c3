//! Short (8.3) names as text. FAT keeps them in an OEM code page; an image filled by mtools
//! (whose default is code page 850) or by DOS and Windows in Western Europe uses code page 850,
//! so its upper half is decoded with that table. A name that fits 8.3 apart from letter case is
//! stored short with the Windows NT case flags, which say to lowercase its base or extension.

use hadris_fat::raw::NtCaseFlags;

/// Code page 850's characters for the bytes 0x80 to 0xFF.
const CP850_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐\
└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";

/// The character code page 850 gives `byte`.
fn cp850(byte: u8) -> char {
    match byte {
        0..=0x7f => char::from(byte),
        high => CP850_HIGH
            .chars()
            .nth(usize::from(high - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER),
    }
}

/// The name an 11-byte short directory name stands for: `BASE.EXT`, trailing spaces dropped,
/// each part lowercased where `case` says so.
pub(crate) fn short_name(raw: [u8; 11], case: NtCaseFlags) -> String {
    let part = |bytes: &[u8], lower: bool| -> String {
        let text: String = bytes.iter().map(|&b| cp850(b)).collect();
        let text = text.trim_end_matches(' ');
        if lower {
            text.to_lowercase()
        } else {
            text.to_string()
        }
    };
    let base = part(&raw[..8], case.contains(NtCaseFlags::LOWER_BASE));
    let ext = part(&raw[8..], case.contains(NtCaseFlags::LOWER_EXT));
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_decode_with_code_page_850_and_the_case_flags() {
        assert_eq!(CP850_HIGH.chars().count(), 128);
        assert_eq!(short_name(*b"README     ", NtCaseFlags::empty()), "README");
        assert_eq!(
            short_name(*b"INDEX   HTM", NtCaseFlags::LOWER_BASE),
            "index.HTM"
        );
        assert_eq!(
            short_name(
                *b"INDEX   HTM",
                NtCaseFlags::LOWER_BASE | NtCaseFlags::LOWER_EXT
            ),
            "index.htm"
        );
        // "DONNÉES" as mtools stores "données": É is 0x90 in code page 850.
        assert_eq!(
            short_name(*b"DONN\x90ES    ", NtCaseFlags::LOWER_BASE),
            "données"
        );
        assert_eq!(short_name(*b".          ", NtCaseFlags::empty()), ".");
        assert_eq!(cp850(0x82), 'é');
        assert_eq!(cp850(0xe1), 'ß');
        assert_eq!(cp850(0xff), '\u{a0}');
    }
}
