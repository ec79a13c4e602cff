//! The Django REST Framework conventions the simulator reproduces: error
//! bodies, query-parameter parsing, page-number pagination, ordering and
//! search.

use std::cmp::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error response in DRF's JSON shape.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn detail(status: StatusCode, detail: &str) -> Self {
        Self {
            status,
            body: json!({ "detail": detail }),
        }
    }

    /// `Http404` raised from DRF's own `get_object_or_404` on a malformed
    /// lookup value, or from a view without a message.
    pub fn not_found() -> Self {
        Self::detail(StatusCode::NOT_FOUND, "Not found.")
    }

    /// Django's `get_object_or_404` on a well-formed lookup value.
    pub fn no_match(model: &str) -> Self {
        Self::detail(
            StatusCode::NOT_FOUND,
            &format!("No {model} matches the given query."),
        )
    }

    /// A serializer or filter-set validation error: `{"field": ["msg"]}`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors.into_error()
    }

    /// A `ValidationError(detail="...")` raised outside any field renders as
    /// a bare list.
    pub fn bare(message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!([message]),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// Collects every field's errors, as DRF reports them all at once.
#[derive(Default)]
pub(crate) struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let entry = self
            .0
            .entry(field.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.into()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_error(self) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: Value::Object(self.0),
        }
    }

    pub fn check(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

/// Query parameters with Django `QueryDict` semantics: `get` is the last
/// value, `all` every value of a repeated key.
pub(crate) struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// django-filter skips a filter whose value is empty.
    pub fn filter(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Authentik's `include_*` switches: `str(value).lower() == "true"`, so
    /// anything but `true` (in any case) turns a default-on switch off.
    pub fn switch(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(value) => value.eq_ignore_ascii_case("true"),
        }
    }

    /// django-filter's `BooleanFilter` (`BooleanWidget`): `true`/`false`/
    /// `1`/`0`; anything else leaves the list unfiltered.
    pub fn boolean_filter(&self, key: &str) -> Option<bool> {
        match self.get(key)?.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }
}

/// Python's `int()` on a query-string value, as far as DRF's pagination
/// and filters use it.
pub(crate) fn python_int(value: &str) -> Option<i64> {
    // Like `int()`: surrounding whitespace and a sign are fine.
    value.trim().parse().ok()
}

/// Page-size policy, per tenant since 2025.12.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageSizes {
    pub default: usize,
    pub max: usize,
}

impl PageSizes {
    /// `page_size` must be a positive integer and is clamped to the maximum;
    /// anything else falls back to the default (#18879).
    fn resolve(self, requested: Option<&str>) -> usize {
        let max = self.max.max(1);
        // A tenant's default can't exceed its own maximum.
        let default = self.default.clamp(1, max);
        match requested.and_then(python_int) {
            Some(n) if n > 0 => (n as usize).min(max),
            _ => default,
        }
    }
}

/// Which items go on the requested page, and the envelope describing it.
pub(crate) struct Page {
    pub range: std::ops::Range<usize>,
    pub pagination: Value,
}

/// Django's `Paginator` (empty first page allowed) behind DRF's
/// `PageNumberPagination`, with Authentik's envelope.
pub(crate) fn paginate(count: usize, params: &Params, sizes: PageSizes) -> Result<Page, ApiError> {
    let size = sizes.resolve(params.get("page_size"));
    let num_pages = if count == 0 { 1 } else { count.div_ceil(size) };
    let number = match params.get("page") {
        None => 1,
        Some("last") => num_pages,
        Some(raw) => match python_int(raw) {
            Some(n) if n >= 1 && (n as usize) <= num_pages => n as usize,
            _ => {
                return Err(ApiError::detail(StatusCode::NOT_FOUND, "Invalid page."));
            }
        },
    };
    let start = (number - 1) * size;
    let end = (start + size).min(count);
    let pagination = json!({
        "next": if number < num_pages { number + 1 } else { 0 },
        // `number` is at least 1, so page 1 gives 0: "no previous page".
        "previous": number - 1,
        "count": count,
        "current": number,
        "total_pages": num_pages,
        "start_index": if count == 0 { 0 } else { start + 1 },
        "end_index": end,
    });
    Ok(Page {
        range: start..end,
        pagination,
    })
}

/// The list envelope; `autocomplete` (2025.8+) is search-UI metadata the
/// simulator leaves empty.
pub(crate) fn envelope(pagination: Value, results: Vec<Value>) -> Value {
    json!({
        "pagination": pagination,
        "results": results,
        "autocomplete": {},
    })
}

/// A sortable field value. `Null` sorts after everything, like Postgres'
/// default `NULLS LAST` for ascending order (and first for descending).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SortKey<'a> {
    Bool(bool),
    Int(i64),
    Text(&'a str),
    /// Postgres compares UUIDs bytewise, which `Uuid`'s `Ord` matches.
    Uuid(uuid::Uuid),
    Null,
}

/// DRF `OrderingFilter`: comma-separated fields, `-` for descending; unknown
/// fields are dropped, and if none is left the view's default applies.
pub(crate) fn ordering(params: &Params, valid: &[&str], default: &str) -> Vec<(String, bool)> {
    let parse = |raw: &str| -> Vec<(String, bool)> {
        raw.split(',')
            .map(str::trim)
            .filter_map(|term| {
                let (field, descending) = match term.strip_prefix('-') {
                    Some(field) => (field, true),
                    None => (term, false),
                };
                valid
                    .contains(&field)
                    .then(|| (field.to_owned(), descending))
            })
            .collect()
    };
    let chosen = params.filter("ordering").map(parse).unwrap_or_default();
    if chosen.is_empty() {
        parse(default)
    } else {
        chosen
    }
}

/// Sorts by the ordering terms; ties fall back to the primary key so pages
/// are reproducible (Postgres would leave them unspecified).
pub(crate) fn sort_by<T>(
    items: &mut [&T],
    terms: &[(String, bool)],
    key: impl for<'x> Fn(&'x T, &str) -> SortKey<'x>,
    tiebreak: impl for<'x> Fn(&'x T) -> SortKey<'x>,
) {
    items.sort_by(|a, b| {
        for (field, descending) in terms {
            let ordering = key(a, field).cmp(&key(b, field));
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        tiebreak(a).cmp(&tiebreak(b))
    });
}

/// DRF `SearchFilter`: every term (split on whitespace and commas) must be
/// contained, case-insensitively, in at least one search field.
pub(crate) fn search_matches(query: &str, fields: &[&str]) -> bool {
    let fields: Vec<String> = fields.iter().map(|f| f.to_lowercase()).collect();
    query
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|term| !term.is_empty())
        .map(str::to_lowercase)
        .all(|term| fields.iter().any(|field| field.contains(&term)))
}

/// Authentik's `attributes` filter: a JSON object whose keys are Django JSON
/// lookups (`a__b` is the path a → b) compared for equality.
pub(crate) fn attributes_filter(raw: &str) -> Result<Vec<(Vec<String>, Value)>, ApiError> {
    let value: Value =
        serde_json::from_str(raw).map_err(|_| ApiError::bare("filter: failed to parse JSON"))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bare("filter: value must be key:value mapping"));
    };
    Ok(map
        .into_iter()
        .map(|(key, value)| (key.split("__").map(str::to_owned).collect(), value))
        .collect())
}

pub(crate) fn attributes_match(attributes: &Value, lookups: &[(Vec<String>, Value)]) -> bool {
    lookups.iter().all(|(path, expected)| {
        let mut current = attributes;
        for key in path {
            match current.get(key) {
                Some(next) => current = next,
                None => return false,
            }
        }
        current == expected
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn page_size_is_clamped_and_defaults_on_garbage() {
        let sizes = PageSizes {
            default: 20,
            max: 100,
        };
        assert_eq!(sizes.resolve(Some("500")), 100);
        assert_eq!(sizes.resolve(Some("0")), 20);
        assert_eq!(sizes.resolve(Some("-3")), 20);
        assert_eq!(sizes.resolve(Some("abc")), 20);
        assert_eq!(sizes.resolve(None), 20);
        assert_eq!(sizes.resolve(Some("7")), 7);
    }

    #[test]
    fn empty_list_is_one_empty_page() {
        let sizes = PageSizes {
            default: 20,
            max: 100,
        };
        let page = paginate(0, &params(&[]), sizes).unwrap();
        assert_eq!(page.range, 0..0);
        assert_eq!(page.pagination["total_pages"], 1);
        assert_eq!(page.pagination["start_index"], 0);
        assert_eq!(page.pagination["end_index"], 0);
        assert!(paginate(0, &params(&[("page", "2")]), sizes).is_err());
    }

    #[test]
    fn search_needs_every_term() {
        assert!(search_matches("jane doe", &["jane.doe", "Jane Doe"]));
        assert!(!search_matches("jane smith", &["jane.doe", "Jane Doe"]));
    }
}
