//! Sizes as people write them: `64M`, `1G`, `512K`, `4096` (bytes), as cargo, qemu-img and
//! `fata run --mem` take them; and back.

/// Parses a size: a whole number of bytes, or one with a `K`, `M`, `G` or `T` suffix (powers of
/// 1024; any case; `KiB`, `MB` and the like are read the same way).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?}: use K, M, G or T, as in 64M"
            ));
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64M"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text} is too large"))
}

/// Formats a size the way [`parse_size`] reads it: in the largest unit that divides it (`64M`,
/// `4100K`, `1536` bytes).
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size(" 4096 "), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn sizes_format_in_the_largest_unit_that_divides_them() {
        assert_eq!(format_size(64 << 20), "64M");
        assert_eq!(format_size(4100 << 10), "4100K");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(0), "0");
        for size in [64 << 20, 4100 << 10, 1536, 3 << 40] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
    }
}
