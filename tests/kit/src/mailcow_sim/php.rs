//! The PHP 8.2 value model Mailcow's `json_api.php` runs on: ordered
//! arrays, and the loose semantics (`intval`, `empty`, `==`, `(array)`,
//! string coercion) most of Mailcow's API quirks come from.

/// A PHP `Throwable` nobody catches (TypeError, ValueError, PDOException).
/// Mailcow's exception handler prints nothing, so the client sees HTTP 200
/// with an empty body.
#[derive(Debug)]
pub(crate) struct Uncaught(pub String);

pub(crate) type Php<T> = Result<T, Uncaught>;

pub(crate) fn type_error(what: impl Into<String>) -> Uncaught {
    Uncaught(what.into())
}

// === PHP arrays ===

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    /// PHP stores canonical decimal-integer string keys (`"0"`, `"-5"`, not
    /// `"05"`) as integer keys.
    pub(crate) fn from_string(key: String) -> Key {
        let canonical = key.parse::<i64>().ok().filter(|n| n.to_string() == key);
        match canonical {
            Some(n) => Key::Int(n),
            None => Key::Str(key),
        }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Key::Int(n) => n.to_string(),
            Key::Str(s) => s.clone(),
        }
    }
}

/// An ordered PHP array.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Arr {
    entries: Vec<(Key, Val)>,
}

const NULL: Val = Val::Null;

impl Arr {
    pub(crate) fn new() -> Arr {
        Arr::default()
    }

    pub(crate) fn list(values: impl IntoIterator<Item = Val>) -> Arr {
        let mut arr = Arr::new();
        for value in values {
            arr.push(value);
        }
        arr
    }

    /// An associative array with string keys, in the given order.
    pub(crate) fn assoc<'a>(pairs: impl IntoIterator<Item = (&'a str, Val)>) -> Arr {
        let mut arr = Arr::new();
        for (key, value) in pairs {
            arr.set(Key::Str(key.to_owned()), value);
        }
        arr
    }

    /// `$arr[$key]`, null when absent (PHP warns and carries on).
    pub(crate) fn get(&self, key: &str) -> &Val {
        self.entries
            .iter()
            .find(|(k, _)| matches!(k, Key::Str(s) if s == key))
            .map_or(&NULL, |(_, v)| v)
    }

    /// `isset($arr[$key])`: present and not null.
    pub(crate) fn isset(&self, key: &str) -> bool {
        !matches!(self.get(key), Val::Null)
    }

    /// `$arr[$key] = $value`: replaces in place or appends.
    pub(crate) fn set(&mut self, key: Key, value: Val) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// `$arr[] = $value`.
    pub(crate) fn push(&mut self, value: Val) {
        let next = self
            .entries
            .iter()
            .filter_map(|(k, _)| match k {
                Key::Int(n) => Some(n.saturating_add(1)),
                Key::Str(_) => None,
            })
            .max()
            .unwrap_or(0)
            .max(0);
        self.entries.push((Key::Int(next), value));
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &(Key, Val)> {
        self.entries.iter()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Val> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `array_merge($self, $other)`: string keys overwrite, integer keys are
    /// appended and renumbered.
    pub(crate) fn merge(&self, other: &Arr) -> Arr {
        let mut out = Arr::new();
        for (key, value) in self.entries.iter().chain(&other.entries) {
            match key {
                Key::Int(_) => out.push(value.clone()),
                Key::Str(_) => out.set(key.clone(), value.clone()),
            }
        }
        out
    }

    /// A copy with the named keys, when set, replaced by `"*"` (how Mailcow
    /// masks passwords in the `log` it echoes).
    pub(crate) fn masked(&self, keys: &[&str]) -> Arr {
        let mut out = self.clone();
        for key in keys {
            if out.isset(key) {
                out.set(Key::Str((*key).to_owned()), Val::str("*"));
            }
        }
        out
    }

    /// `json_encode` writes a list iff the keys are exactly 0, 1, 2, ...
    pub(crate) fn is_list(&self) -> bool {
        self.entries
            .iter()
            .enumerate()
            .all(|(i, (k, _))| matches!(k, Key::Int(n) if usize::try_from(*n) == Ok(i)))
    }
}

// === PHP values ===

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Arr),
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Str(s.to_owned())
    }
}

impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Str(s)
    }
}

impl From<i64> for Val {
    fn from(n: i64) -> Val {
        Val::Int(n)
    }
}

impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Val {
        s.map_or(Val::Null, Val::Str)
    }
}

impl From<Arr> for Val {
    fn from(a: Arr) -> Val {
        Val::Arr(a)
    }
}

impl Val {
    pub(crate) fn str(s: impl Into<String>) -> Val {
        Val::Str(s.into())
    }

    /// `[a, b, ...]`.
    pub(crate) fn list(values: impl IntoIterator<Item = Val>) -> Val {
        Val::Arr(Arr::list(values))
    }

    pub(crate) fn as_arr(&self) -> Option<&Arr> {
        match self {
            Val::Arr(a) => Some(a),
            _ => None,
        }
    }

    /// `$val[$key]` on something that may not be an array. Reading an offset
    /// of null, a bool or a number yields null with a warning; of a string
    /// (with a non-numeric key) it throws.
    pub(crate) fn offset(&self, key: &str) -> Php<Val> {
        match self {
            Val::Arr(a) => Ok(a.get(key).clone()),
            Val::Str(_) => Err(type_error(format!(
                "Cannot access offset of type string on string ({key})"
            ))),
            _ => Ok(Val::Null),
        }
    }

    /// `(array)$val`.
    pub(crate) fn to_array(&self) -> Arr {
        match self {
            Val::Null => Arr::new(),
            Val::Arr(a) => a.clone(),
            other => Arr::list([other.clone()]),
        }
    }

    /// `(bool)$val`.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(n) => *n != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !(s.is_empty() || s == "0"),
            Val::Arr(a) => !a.is_empty(),
        }
    }

    /// `empty($val)`.
    pub(crate) fn is_empty(&self) -> bool {
        !self.truthy()
    }

    /// `intval($val)`.
    pub(crate) fn intval(&self) -> i64 {
        match self {
            Val::Null => 0,
            Val::Bool(b) => i64::from(*b),
            Val::Int(n) => *n,
            Val::Float(f) => float_to_int(*f),
            Val::Str(s) => str_intval(s),
            Val::Arr(a) => i64::from(!a.is_empty()),
        }
    }

    /// The string PHP coerces a scalar to; `None` for arrays, which a
    /// string parameter rejects with a TypeError.
    pub(crate) fn to_php_string(&self) -> Option<String> {
        Some(match self {
            Val::Null => String::new(),
            Val::Bool(true) => "1".into(),
            Val::Bool(false) => String::new(),
            Val::Int(n) => n.to_string(),
            Val::Float(f) => float_to_string(*f),
            Val::Str(s) => s.clone(),
            Val::Arr(_) => return None,
        })
    }

    /// A scalar passed to a `string` parameter of a PHP function.
    pub(crate) fn string_arg(&self, function: &str) -> Php<String> {
        self.to_php_string().ok_or_else(|| {
            type_error(format!(
                "{function}(): Argument #1 must be of type string, array given"
            ))
        })
    }

    /// PHP 8's `==`.
    pub(crate) fn loose_eq(&self, other: &Val) -> bool {
        use Val::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(b), o) | (o, Bool(b)) => *b == o.truthy(),
            (Null, Str(s)) | (Str(s), Null) => s.is_empty(),
            (Null, o) | (o, Null) => !o.truthy(),
            (Int(a), Int(b)) => a == b,
            (Int(a), Float(b)) | (Float(b), Int(a)) => (*a as f64) == *b,
            (Float(a), Float(b)) => a == b,
            (Int(_) | Float(_), Str(s)) | (Str(s), Int(_) | Float(_)) => {
                let number = if let Str(_) = self { other } else { self };
                match numeric_string(s) {
                    Some(n) => n.eq_val(number),
                    None => number.to_php_string().as_deref() == Some(s.as_str()),
                }
            }
            (Str(a), Str(b)) => match (numeric_string(a), numeric_string(b)) {
                (Some(x), Some(y)) => x.eq_num(&y),
                _ => a == b,
            },
            (Arr(a), Arr(b)) => {
                a.len() == b.len()
                    && a.entries
                        .iter()
                        .all(|(k, v)| b.entries.iter().any(|(k2, v2)| k == k2 && v.loose_eq(v2)))
            }
            (Arr(_), _) | (_, Arr(_)) => false,
        }
    }

    /// `in_array($self, $haystack)` (loose).
    pub(crate) fn in_array<'a>(&self, mut haystack: impl Iterator<Item = &'a Val>) -> bool {
        haystack.any(|v| self.loose_eq(v))
    }
}

/// `(int)` of a float (`zend_dval_to_lval`): NaN and infinities become 0,
/// out-of-range values wrap modulo 2^64.
fn float_to_int(f: f64) -> i64 {
    if !f.is_finite() {
        return 0;
    }
    if f > i64::MIN as f64 && f < i64::MAX as f64 {
        return f.trunc() as i64;
    }
    let two_64 = 18_446_744_073_709_551_616.0_f64;
    let mut modulo = f.trunc() % two_64;
    if modulo < 0.0 {
        modulo += two_64;
    }
    // Reinterpreting the unsigned value as signed is the wrap-around.
    (modulo as u64) as i64
}

/// `(string)$float`: 14 significant digits (`precision`), `1.0E+25` style
/// beyond them.
fn float_to_string(f: f64) -> String {
    if f.is_nan() {
        return "NAN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF" } else { "-INF" }.into();
    }
    php_gcvt(f, Some(14), 'E')
}

/// `php_gcvt()`: `precision` significant digits (`None`: the shortest
/// round-trip form, as with `serialize_precision = -1`, deciding the
/// notation as if it were 17), exponential notation when the decimal point
/// would sit before the 4th leading zero or after the last digit.
pub(crate) fn php_gcvt(f: f64, precision: Option<usize>, e: char) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = match precision {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), f),
        None => format!("{f:e}"),
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let sign = if f < 0.0 { "-" } else { "" };
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let decimal_point = exponent + 1;
    let limit = precision.unwrap_or(17) as i64;
    if decimal_point < -3 || decimal_point > limit {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}.{rest}{e}{exp_sign}{}", exponent.abs());
    }
    let len = digits.len() as i64;
    if decimal_point <= 0 {
        let zeros = "0".repeat(decimal_point.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if len <= decimal_point {
        let zeros = "0".repeat((decimal_point - len) as usize);
        format!("{sign}{digits}{zeros}")
    } else {
        let (whole, frac) = digits.split_at(decimal_point as usize);
        format!("{sign}{whole}.{frac}")
    }
}

// === numeric strings ===

#[derive(Clone, Copy, Debug)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(f) => f,
        }
    }

    fn eq_num(&self, other: &Number) -> bool {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a == b,
            _ => self.as_f64() == other.as_f64(),
        }
    }

    fn eq_val(&self, v: &Val) -> bool {
        match v {
            Val::Int(n) => self.eq_num(&Number::Int(*n)),
            Val::Float(f) => self.as_f64() == *f,
            _ => false,
        }
    }
}

const PHP_WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

/// The longest numeric prefix of `s` (after leading whitespace) and where
/// it ends, as PHP's `_is_numeric_string_ex` scans it.
pub(crate) fn numeric_prefix(s: &str) -> Option<(Number, usize)> {
    let bytes = s.as_bytes();
    let mut i = s.len() - s.trim_start_matches(PHP_WHITESPACE).len();
    let start = i;
    if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut int_digits = i - digits_start;
    let mut is_float = false;
    if i < bytes.len() && bytes[i] == b'.' {
        let frac_start = i + 1;
        let mut j = frac_start;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if int_digits > 0 || j > frac_start {
            is_float = true;
            int_digits += j - frac_start;
            i = j;
        }
    }
    if int_digits == 0 {
        return None;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        let exp_digits = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            is_float = true;
            i = j;
        }
    }
    let text = &s[start..i];
    let number = if is_float {
        Number::Float(text.parse().unwrap_or(0.0))
    } else {
        match text.parse::<i64>() {
            Ok(n) => Number::Int(n),
            // Integer overflow makes PHP switch to a float.
            Err(_) => Number::Float(text.parse().unwrap_or(0.0)),
        }
    };
    Some((number, i))
}

/// `is_numeric($s)` for strings: leading and (PHP 8) trailing whitespace
/// allowed, nothing else.
pub(crate) fn numeric_string(s: &str) -> Option<Number> {
    let (number, end) = numeric_prefix(s)?;
    s[end..]
        .trim_start_matches(PHP_WHITESPACE)
        .is_empty()
        .then_some(number)
}

/// `intval("12abc") == 12`, `intval("1e3") == 1000`, `intval("x") == 0`.
/// Numeric strings saturate instead of wrapping (`zend_dval_to_lval_cap`).
pub(crate) fn str_intval(s: &str) -> i64 {
    match numeric_prefix(s) {
        Some((Number::Int(n), _)) => n,
        Some((Number::Float(f), _)) if !f.is_finite() => 0,
        Some((Number::Float(f), _)) => {
            if f >= i64::MAX as f64 {
                i64::MAX
            } else if f <= i64::MIN as f64 {
                i64::MIN
            } else {
                f.trunc() as i64
            }
        }
        None => 0,
    }
}

// === string functions ===

/// `trim($s)`: PHP's default character list.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
}

/// `htmlspecialchars($s)` with PHP 8.1+ default flags.
pub(crate) fn htmlspecialchars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            c => out.push(c),
        }
    }
    out
}

/// `htmlspecialchars($val)` on a request value.
pub(crate) fn html_val(v: &Val) -> Php<String> {
    Ok(htmlspecialchars(&v.string_arg("htmlspecialchars")?))
}

/// `array_map('trim', preg_split("/( |,|;|\n)/", $s))`: every separator
/// splits, so `"a,,b"` has an empty element in the middle.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split([' ', ',', ';', '\n'])
        .map(|part| trim(part).to_owned())
        .collect()
}

/// `strstr($s, '@')` / `strstr($s, '@', true)`: `None` stands for `false`.
pub(crate) fn split_at_sign(s: &str) -> (Option<&str>, Option<&str>) {
    match s.find('@') {
        Some(i) => (Some(&s[..i]), Some(&s[i + 1..])),
        None => (None, None),
    }
}

/// `empty($s)` for a string.
pub(crate) fn str_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intval_follows_php() {
        assert_eq!(Val::str("1").intval(), 1);
        assert_eq!(Val::str("true").intval(), 0);
        assert_eq!(Val::str(" 12abc").intval(), 12);
        assert_eq!(Val::str("1e3").intval(), 1000);
        assert_eq!(Val::Bool(true).intval(), 1);
        assert_eq!(Val::Float(1.9).intval(), 1);
        assert_eq!(Val::Null.intval(), 0);
        // Printed by PHP 8.2.36.
        assert_eq!(Val::str("1e20").intval(), i64::MAX);
        assert_eq!(Val::str("1e400").intval(), 0);
        assert_eq!(Val::Float(1e20).intval(), 7_766_279_631_452_241_920);
        assert_eq!(Val::Float(-1e20).intval(), -7_766_279_631_452_241_920);
        assert_eq!(Val::str("9999999999999999999").intval(), i64::MAX);
    }

    /// Expected values printed by PHP 8.2.36.
    #[test]
    fn floats_print_like_php() {
        let cases = [
            (1e14, "1.0E+14", "100000000000000"),
            (1e17, "1.0E+17", "1.0e+17"),
            (
                123456789012345678.0,
                "1.2345678901235E+17",
                "1.2345678901234568e+17",
            ),
            (0.0001, "0.0001", "0.0001"),
            (0.00001, "1.0E-5", "1.0e-5"),
            (-2.5, "-2.5", "-2.5"),
            (0.1 + 0.2, "0.3", "0.30000000000000004"),
            (3.0, "3", "3"),
        ];
        for (f, string, json) in cases {
            assert_eq!(
                Val::Float(f).to_php_string().as_deref(),
                Some(string),
                "{f}"
            );
            assert_eq!(php_gcvt(f, None, 'e'), json, "{f}");
        }
    }

    #[test]
    fn loose_equality_follows_php8() {
        assert!(Val::str("*").loose_eq(&Val::Bool(true)));
        assert!(!Val::str("*").loose_eq(&Val::Int(0)));
        assert!(Val::str("1e3").loose_eq(&Val::str("1000")));
        assert!(Val::Int(1).loose_eq(&Val::str("1")));
        assert!(!Val::Int(1).loose_eq(&Val::str("1abc")));
        assert!(Val::Null.loose_eq(&Val::str("")));
        assert!(!Val::Null.loose_eq(&Val::str("0")));
    }
}
