//! Resource quantities in the form the apiserver writes them back.
//!
//! The apiserver parses every quantity (`resource.Quantity` in apimachinery) and serializes it
//! in canonical form unless it was already canonical: `"0.5"` comes back as `500m`, `1000m` as
//! `1`, `1024Mi` as `1Gi`, `1.5Gi` as `1536Mi`, a YAML number `1000` as `1k`. A digest taken
//! over a manifest must see the same text, so [`canonical`] reproduces that form: the value
//! rounded up to nano units, a decimal mantissa with its exponent lowered to a multiple of
//! three and the matching SI suffix (or `eN` for exponent notation), and a binary suffix for
//! whole binary quantities of 1Ki and more. In resource lists the apiserver's defaulting also
//! rounds up to milli units.
//!
//! Checked against a v1.28 apiserver: every case in the tests below was sent in a Deployment's
//! `resources.limits` and read back from a server-side dry run.

/// Largest value a binary-SI quantity keeps; the apiserver caps larger ones here.
const MAX_BINARY: u128 = i64::MAX as u128;

/// How the quantity was written, which decides how it is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// No suffix, or `n u m k M G T P E`.
    DecimalSi,
    /// `Ki Mi Gi Ti Pi Ei`.
    BinarySi,
    /// `e3`, `E-6`.
    DecimalExponent,
}

/// An exact non-negative value, `mantissa × 10^exponent`.
#[derive(Clone, Copy, Debug)]
struct Decimal {
    mantissa: u128,
    exponent: i32,
}

/// The smallest unit a quantity keeps: nano, and milli in a resource list.
const NANO: i32 = -9;
const MILLI: i32 = -3;

/// The canonical text of the quantity `text` (a lone quantity, such as an `emptyDir`'s
/// `sizeLimit`), or `None` when it is not a quantity this reproduces exactly (unparseable, or
/// too large to hold in 128 bits); callers then keep the text as written.
pub fn canonical(text: &str) -> Option<String> {
    canonical_to(text, NANO)
}

/// The canonical text of a quantity in a resource list (a container's `limits` and
/// `requests`, a pod's `overhead`): the apiserver's defaulting also rounds those up to milli
/// units, so `1.1e-9` comes back as `1e-3` and `5n` as `1m`.
pub fn canonical_in_resource_list(text: &str) -> Option<String> {
    canonical_to(text, MILLI)
}

fn canonical_to(text: &str, unit: i32) -> Option<String> {
    let text = text.trim();
    let negative = text.starts_with('-');
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    let parts = Parts::split(unsigned)?;
    if parts.kept_as_written(unit) {
        return Some(text.to_string());
    }
    let (format, value) = parts.value(unit)?;
    if value.mantissa == 0 {
        return Some("0".to_string());
    }
    let magnitude = render(format, value)?;
    Some(if negative {
        format!("-{magnitude}")
    } else {
        magnitude
    })
}

/// An unsigned quantity cut where apimachinery's parser cuts it.
struct Parts<'a> {
    /// The digits before the point, leading zeros dropped (`"0"` when none is left).
    whole: &'a str,
    /// The digits after the point.
    fraction: &'a str,
    format: Format,
    /// The power of ten (decimal and exponent suffixes) or of two (binary ones).
    power: i32,
}

impl<'a> Parts<'a> {
    fn split(text: &'a str) -> Option<Self> {
        let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (whole, rest) = text.split_at(digits_end(text));
        let (fraction, suffix) = match rest.strip_prefix('.') {
            Some(after) => after.split_at(digits_end(after)),
            None => ("", rest),
        };
        let whole = whole.trim_start_matches('0');
        let (format, power) = suffix_value(suffix)?;
        Some(Self {
            whole: if whole.is_empty() { "0" } else { whole },
            fraction,
            format,
            power,
        })
    }

    /// Whether the apiserver keeps the text exactly as written. Its parser has a fast path
    /// for short numbers that keeps the original string when the digits look canonical
    /// (which is why `1.500k` and `0100m` come back unchanged while `1.000k` becomes `1k`).
    /// Rounding to `unit` afterwards rewrites the text when it holds finer digits.
    fn kept_as_written(&self, unit: i32) -> bool {
        let digits = self.whole.len() + self.fraction.len();
        let Ok(len) = i32::try_from(digits) else {
            return false;
        };
        match self.format {
            Format::DecimalSi | Format::DecimalExponent => {
                let Ok(fraction_len) = i32::try_from(self.fraction.len()) else {
                    return false;
                };
                let scale = self.power - fraction_len;
                let shifted = format!("{}{}", self.whole, self.fraction);
                len <= 18
                    && scale >= unit
                    && scale % 3 == 0
                    && !shifted.ends_with("000")
                    && !shifted.starts_with('0')
            }
            Format::BinarySi => {
                // precision = 15 - len(num) - int32(float32(exponent)*3/10) - 1, in Go.
                let precision = 15 - len - self.power * 3 / 10 - 1;
                let Ok(value) = self.whole.parse::<i64>() else {
                    return false;
                };
                self.fraction.is_empty()
                    && precision >= 0
                    && value.checked_mul(1i64 << self.power).is_some()
                    && value & 0x07 != 0
            }
        }
    }

    /// The exact value, rounded up to `unit`, and the format it is written back in.
    fn value(&self, unit: i32) -> Option<(Format, Decimal)> {
        let mut mantissa: u128 = 0;
        for d in self.whole.bytes().chain(self.fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(d - b'0'))?;
        }
        let fraction_len = i32::try_from(self.fraction.len()).ok()?;
        let mut exponent = match self.format {
            Format::BinarySi => {
                mantissa = mantissa.checked_mul(1u128.checked_shl(self.power.unsigned_abs())?)?;
                -fraction_len
            }
            _ => self.power.checked_sub(fraction_len)?,
        };
        if mantissa != 0 && exponent < unit {
            // Rounded up, so that asking for a sliver of something still gets some of it.
            let shift = (unit - exponent).unsigned_abs();
            mantissa = match 10u128.checked_pow(shift) {
                Some(divisor) => mantissa.div_ceil(divisor),
                None => 1,
            };
            exponent = unit;
        }
        let mut value = Decimal { mantissa, exponent };
        let mut format = self.format;
        if format == Format::BinarySi {
            if less_than(value, 1) {
                format = Format::DecimalSi;
            } else if !less_than(value, MAX_BINARY + 1) {
                value = Decimal {
                    mantissa: MAX_BINARY,
                    exponent: 0,
                };
            }
        }
        Some((format, value))
    }
}

/// The format a suffix means, and the power of ten (or of two, for binary suffixes) it
/// multiplies by.
fn suffix_value(suffix: &str) -> Option<(Format, i32)> {
    let decimal = |e: i32| Some((Format::DecimalSi, e));
    let binary = |e: i32| Some((Format::BinarySi, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((Format::DecimalExponent, exponent.parse().ok()?))
        }
    }
}

/// Whether `value` is below the whole number `bound`.
fn less_than(value: Decimal, bound: u128) -> bool {
    match u32::try_from(value.exponent) {
        Ok(up) => match 10u128.checked_pow(up) {
            Some(scale) => value.mantissa.checked_mul(scale).is_some_and(|v| v < bound),
            None => false,
        },
        Err(_) => {
            let down = value.exponent.unsigned_abs();
            match 10u128.checked_pow(down) {
                Some(scale) => bound.checked_mul(scale).is_none_or(|b| value.mantissa < b),
                None => true,
            }
        }
    }
}

/// The whole number `value` is, if it is one.
fn whole(value: Decimal) -> Option<u128> {
    if value.exponent >= 0 {
        return value
            .mantissa
            .checked_mul(10u128.checked_pow(value.exponent.unsigned_abs())?);
    }
    let scale = 10u128.checked_pow(value.exponent.unsigned_abs())?;
    value
        .mantissa
        .is_multiple_of(scale)
        .then_some(value.mantissa / scale)
}

fn render(format: Format, value: Decimal) -> Option<String> {
    if format == Format::BinarySi
        && !less_than(value, 1024)
        && let Some(mut amount) = whole(value)
    {
        const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
        let mut times = 0;
        while amount >= 1024 && amount % 1024 == 0 && times + 1 < SUFFIXES.len() {
            amount /= 1024;
            times += 1;
        }
        return Some(format!("{amount}{}", SUFFIXES[times]));
    }
    // Binary quantities below 1Ki, or with a fraction, are written as decimal SI.
    let format = match format {
        Format::BinarySi => Format::DecimalSi,
        other => other,
    };
    let Decimal {
        mut mantissa,
        mut exponent,
    } = value;
    while mantissa >= 10 && mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    let down = exponent.rem_euclid(3);
    mantissa = mantissa.checked_mul(10u128.pow(down.unsigned_abs()))?;
    exponent -= down;
    let suffix = match format {
        Format::DecimalExponent if exponent == 0 => String::new(),
        Format::DecimalExponent => format!("e{exponent}"),
        _ => match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            // The apiserver has no suffix for these either; keep the text as written.
            _ => return None,
        }
        .to_string(),
    };
    Some(format!("{mantissa}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Deployment's `resources.limits.cpu` as sent, and as a v1.28 apiserver read it back.
    const IN_RESOURCE_LIST: [(&str, &str); 63] = [
        ("0", "0"),
        ("0m", "0"),
        ("0Gi", "0"),
        ("0.0", "0"),
        ("1", "1"),
        ("1000", "1k"),
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("0.25", "250m"),
        ("2.0", "2"),
        ("0.1", "100m"),
        ("100m", "100m"),
        ("0100m", "0100m"),
        ("+1", "+1"),
        ("1.", "1."),
        ("1.0", "1"),
        ("1.500k", "1.500k"),
        ("1.000k", "1k"),
        (".001", "1m"),
        ("1.G", "1.G"),
        ("1000M", "1G"),
        ("50k", "50k"),
        ("100.035k", "100.035k"),
        ("10.035M", "10.035M"),
        ("10.0350M", "10035k"),
        ("8.1k", "8100"),
        ("2.5P", "2500T"),
        ("12E", "12E"),
        ("1Ki", "1Ki"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("0.5Mi", "512Ki"),
        ("0.5Ki", "512"),
        ("1.5Ki", "1536"),
        ("0.05Gi", "53687091200m"),
        ("100.035Ki", "102435840m"),
        (".001Ki", "1024m"),
        (".000001Ki", "2m"),
        (".000000001Ki", "1m"),
        (".000000000001Ki", "1m"),
        ("9Ei", "9223372036854775807"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        ("01Mi", "01Mi"),
        ("8Ki", "8Ki"),
        ("8192", "8192"),
        ("64Mi", "64Mi"),
        ("12e2", "1200"),
        ("1.2e3", "1200"),
        ("1.3E+6", "1300e3"),
        ("1.7E18", "1700e15"),
        ("1E-3", "1E-3"),
        ("1000e-3", "1"),
        ("0.5e-1", "50e-3"),
        ("1.1E-9", "1e-3"),
        ("3.001n", "1m"),
        ("0.9n", "1m"),
        ("0.0000000001", "1m"),
        ("0.00000012345", "1m"),
        (" 64Mi ", "64Mi"),
    ];

    #[test]
    fn resource_list_quantities_come_back_as_the_apiserver_writes_them() {
        for (input, expected) in IN_RESOURCE_LIST {
            assert_eq!(
                canonical_in_resource_list(input).as_deref(),
                Some(expected),
                "{input}"
            );
        }
        // JSON numbers, as `kubectl` sends YAML numbers, read back the same way.
        for (number, expected) in [
            ("1000", "1k"),
            ("0.5", "500m"),
            ("1.0", "1"),
            ("1024", "1024"),
        ] {
            assert_eq!(
                canonical_in_resource_list(number).as_deref(),
                Some(expected)
            );
        }
        assert_eq!(
            canonical_in_resource_list("1.234567").as_deref(),
            Some("1235m")
        );
    }

    #[test]
    fn lone_quantities_keep_nano_units() {
        // An emptyDir's sizeLimit as sent, and as the same apiserver read it back.
        let cases = [
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
            ("1.1E-9", "2e-9"),
            ("3.001n", "4n"),
            ("0.9n", "1n"),
            ("0.0000000001", "1n"),
            ("0.00000012345", "124n"),
            ("1.234567", "1.234567"),
            ("5n", "5n"),
            ("0.5", "500m"),
            ("1000", "1k"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical(input).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn canonical_text_is_a_fixed_point() {
        for input in [
            "500m",
            "1Gi",
            "1536Mi",
            "1k",
            "124n",
            "1e3",
            "1700e15",
            "53687091200m",
        ] {
            assert_eq!(canonical(input).as_deref(), Some(input));
        }
    }

    #[test]
    fn what_is_not_a_quantity_is_left_alone() {
        for input in [
            "", "abc", "1.1.M", "0.1mi", "1i", "1e", "1e+", "1Ki2", "1000E", "1x",
        ] {
            assert_eq!(canonical(input), None, "{input:?}");
        }
    }
}
