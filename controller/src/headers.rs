//! A notification target's request headers, from the data of the Secret its `headersFrom`
//! names: each key a header name, each value its value. Pure and strict: one bad entry fails
//! the whole target, so a half-authenticated request is never sent.

use std::collections::BTreeMap;

use hyper::http::{HeaderName, HeaderValue};
use k8s_openapi::ByteString;

/// Headers the controller sets itself: overriding them would break the request or lie about
/// its body.
pub const RESERVED: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// Why a Secret's data cannot be headers. The messages name the key, never the value: values
/// are credentials.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The key is not a valid HTTP header name.
    #[error("the Secret key {0:?} is not a valid HTTP header name")]
    Name(String),
    /// The value of the key is not a valid HTTP header value.
    #[error(
        "the value of the Secret key {0:?} is not a valid HTTP header value (control characters?)"
    )]
    Value(String),
    /// The key names a header the controller sets itself.
    #[error("the Secret key {0:?} names a header the controller sets itself")]
    Reserved(String),
}

/// The headers of a Secret's `data`. A trailing newline (as `kubectl create secret
/// --from-file` leaves one) is trimmed; values are marked sensitive so they stay out of debug
/// output.
pub fn from_secret_data(
    data: &BTreeMap<String, ByteString>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderError> {
    data.iter()
        .map(|(key, ByteString(bytes))| {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| HeaderError::Name(key.clone()))?;
            if RESERVED.contains(&name.as_str()) {
                return Err(HeaderError::Reserved(key.clone()));
            }
            let trimmed = bytes
                .strip_suffix(b"\n")
                .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
                .unwrap_or(bytes);
            let mut value =
                HeaderValue::from_bytes(trimmed).map_err(|_| HeaderError::Value(key.clone()))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn headers_by_situation() {
        // (situation, data, expected headers or error)
        type Want = Result<Vec<(&'static str, &'static str)>, HeaderError>;
        type Case = (&'static str, Vec<(&'static str, &'static [u8])>, Want);
        let cases: Vec<Case> = vec![
            ("an empty Secret: no headers", vec![], Ok(vec![])),
            (
                "a bearer token",
                vec![("Authorization", b"Bearer s3cret")],
                Ok(vec![("authorization", "Bearer s3cret")]),
            ),
            (
                "a trailing newline from a file is trimmed",
                vec![("X-Token", b"abc\r\n"), ("X-Other", b"def\n")],
                Ok(vec![("x-other", "def"), ("x-token", "abc")]),
            ),
            (
                "a space in a name is refused",
                vec![("Bad Name", b"v")],
                Err(HeaderError::Name("Bad Name".into())),
            ),
            (
                "a newline inside a value is refused",
                vec![("X-Token", b"abc\nInjected: yes")],
                Err(HeaderError::Value("X-Token".into())),
            ),
            (
                "the content type is the controller's",
                vec![("Content-Type", b"text/plain")],
                Err(HeaderError::Reserved("Content-Type".into())),
            ),
            (
                "one bad key fails the whole Secret",
                vec![
                    ("Authorization", b"Bearer x"),
                    ("host", b"evil.example.com"),
                ],
                Err(HeaderError::Reserved("host".into())),
            ),
        ];
        for (situation, pairs, want) in cases {
            let got = from_secret_data(&data(&pairs)).map(|headers| {
                headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
                    .collect::<Vec<_>>()
            });
            let want = want.map(|h| {
                h.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{situation}");
        }
    }

    #[test]
    fn errors_never_show_the_value() {
        let error = from_secret_data(&data(&[("X-Token", b"top-secret\x01")])).unwrap_err();
        assert!(!error.to_string().contains("top-secret"), "{error}");
    }
}
