//! `X-Twilio-Signature`: how Twilio signs the webhooks it sends, and how we check them.
//!
//! The signature is `base64(HMAC-SHA1(auth_token, url + sorted params))`. Twilio is not consistent about
//! whether the signed URL carries the port, so [`validate`] accepts a signature over the URL as given, with the
//! port stripped, or with the scheme's default port added, exactly like the official Python and Node
//! validators. It also accepts the WHATWG-normalised form of the URL that twilio-node signs (a raw `'` in the
//! query becomes `%27` there). All comparisons are constant time.
//!
//! Params are `(name, value)` pairs as received (URL-decoded); a name may repeat. For GET webhooks the params
//! are already in the URL, so pass an empty slice.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use url::Url;

/// Header carrying the signature on every webhook Twilio sends.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Query parameter Twilio adds to JSON-body webhook URLs (lowercase hex SHA-256 of the body).
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Computes Twilio's signature for `url` and form `params`.
///
/// Names are sorted by bytes; each name's values are deduplicated and sorted, and `name + value` is appended
/// once per value. The URL is used exactly as given, which is what a simulator must sign.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut grouped: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        grouped.entry(name).or_default().insert(value);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(url.as_bytes());
    for (name, values) in grouped {
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks a form (POST) or GET webhook signature, tolerating Twilio's port quirk.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let mut valid = Choice::from(0);
    // Every candidate is checked (no early exit) so timing does not reveal which form matched.
    for candidate in candidate_urls(url) {
        let expected = compute_signature(auth_token, &candidate, params);
        valid |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    valid.into()
}

/// Checks a JSON-body webhook: the URL's `bodySHA256` must match the body and the signature must cover the URL
/// (with no params appended). A URL without `bodySHA256` is rejected.
pub fn validate_json_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = body_sha256_param(url) else {
        return false;
    };
    let hash_matches = body_sha256_hex(body)
        .as_bytes()
        .ct_eq(claimed.to_ascii_lowercase().as_bytes());
    // Evaluate both halves before combining so a bad hash costs the same as a bad signature.
    let signature_matches = Choice::from(u8::from(validate(auth_token, url, &[], signature)));
    (hash_matches & signature_matches).into()
}

/// Lowercase hex SHA-256 of a webhook body, the value Twilio puts in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn body_sha256_param(url: &str) -> Option<String> {
    let (_, rest) = url.split_once('?')?;
    let query = rest.split_once('#').map_or(rest, |(query, _)| query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == BODY_SHA256_PARAM)
        .map(|(_, value)| value.into_owned())
}

/// The URL forms Twilio may have signed, deduplicated: as given, without port, with the default port, and the
/// same three for the WHATWG serialisation (what twilio-node signs).
fn candidate_urls(url: &str) -> Vec<String> {
    let mut bases = vec![url.to_owned()];
    if let Ok(normalised) = Url::parse(url)
        && normalised.as_str() != url
    {
        bases.push(normalised.into());
    }
    let mut candidates: Vec<String> = Vec::with_capacity(6);
    for base in bases {
        let variants = [
            Some(base.clone()),
            without_port(&base),
            with_default_port(&base),
        ];
        for variant in variants.into_iter().flatten() {
            if !candidates.contains(&variant) {
                candidates.push(variant);
            }
        }
    }
    candidates
}

/// Byte offsets inside a URL string needed to add or remove the port without re-serialising the rest: string
/// surgery keeps the path and query byte-exact, which the signature depends on.
struct Authority<'a> {
    scheme: &'a str,
    /// Offset of the `:` before the port, if there is one.
    port_colon: Option<usize>,
    /// Offset where the authority ends (start of path, query, fragment or end of string).
    end: usize,
}

fn authority(url: &str) -> Option<Authority<'_>> {
    let scheme_end = url.find("://")?;
    let start = scheme_end + 3;
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    // Userinfo may itself contain ':' (user:pass@), so the host starts after the last '@'.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host = &authority[host_start..];
    let colon = if host.starts_with('[') {
        // IPv6 literal: only a ':' right after the closing bracket introduces a port.
        host.find(']')
            .map(|i| i + 1)
            .filter(|&i| host[i..].starts_with(':'))
    } else {
        host.rfind(':')
    };
    Some(Authority {
        scheme: &url[..scheme_end],
        port_colon: colon.map(|c| start + host_start + c),
        end,
    })
}

fn without_port(url: &str) -> Option<String> {
    let authority = authority(url)?;
    let colon = authority.port_colon?;
    Some(format!("{}{}", &url[..colon], &url[authority.end..]))
}

fn with_default_port(url: &str) -> Option<String> {
    let authority = authority(url)?;
    if authority.port_colon.is_some() {
        return None;
    }
    let port = match authority.scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => 443,
        "http" | "ws" => 80,
        _ => return None,
    };
    Some(format!(
        "{}:{port}{}",
        &url[..authority.end],
        &url[authority.end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "12345";
    const BASE_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const BODY: &str = r#"{"property": "value", "boolean": true}"#;
    const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    const EMPTY_BODY_HASH: &str =
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The parameter set P shared by the official vectors.
    fn official_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ])
    }

    #[test]
    fn base_vector_is_computed_and_validated() {
        let params = official_params();
        let expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

        assert_eq!(compute_signature(TOKEN, BASE_URL, &params), expected);
        assert!(validate(TOKEN, BASE_URL, &params, expected));
    }

    #[test]
    fn wrong_signature_token_url_or_params_are_rejected() {
        let params = official_params();
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

        assert!(!validate(TOKEN, BASE_URL, &params, "WRONG_SIGNATURE"));
        assert!(!validate(TOKEN, BASE_URL, &params, ""));
        assert!(!validate("54321", BASE_URL, &params, good));
        assert!(!validate(TOKEN, &format!("{BASE_URL}&x=1"), &params, good));
        assert!(!validate(TOKEN, BASE_URL, &params[1..], good));
    }

    #[test]
    fn https_url_without_port_accepts_signature_over_port_443() {
        let params = official_params();
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let expected = "kvajT1Ptam85bY51eRf/AJRuM3w=";

        assert_eq!(compute_signature(TOKEN, with_port, &params), expected);
        assert!(validate(TOKEN, BASE_URL, &params, expected));
        assert!(validate(TOKEN, with_port, &params, expected));
        // ...and the port-stripped form is accepted when the request URL carries :443.
        assert!(validate(
            TOKEN,
            with_port,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn http_url_without_port_accepts_signature_over_port_80() {
        let params = official_params();
        let expected = "0ZXoZLH/DfblKGATFgpif+LLRf4=";

        assert_eq!(
            compute_signature(
                TOKEN,
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                &params
            ),
            expected
        );
        assert!(validate(
            TOKEN,
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
            expected
        ));
    }

    #[test]
    fn http_url_with_custom_port_validates_as_given() {
        let params = official_params();
        let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
        let expected = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=";

        assert_eq!(compute_signature(TOKEN, url, &params), expected);
        assert!(validate(TOKEN, url, &params, expected));
    }

    #[test]
    fn https_url_with_custom_port_validates_through_the_stripped_form() {
        let params = official_params();
        let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";

        assert!(validate(
            TOKEN,
            url,
            &params,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn repeated_names_and_duplicate_values_are_deduplicated_and_sorted() {
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        let expected = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";

        assert_eq!(compute_signature(TOKEN, BASE_URL, &params), expected);
        assert!(validate(TOKEN, BASE_URL, &params, expected));
    }

    #[test]
    fn array_values_validate_in_any_order() {
        let expected = "83O6e2vORAoJHUNzJjDWN1jz+BA=";
        let forward = pairs(&[
            ("MessagingBinding.Address", "+1325xxxxxxx"),
            ("MessagingBinding.Address", "+1415xxxxxxx"),
        ]);
        let backward = pairs(&[
            ("MessagingBinding.Address", "+1415xxxxxxx"),
            ("MessagingBinding.Address", "+1325xxxxxxx"),
        ]);

        assert_eq!(compute_signature(TOKEN, BASE_URL, &forward), expected);
        assert!(validate(TOKEN, BASE_URL, &forward, expected));
        assert!(validate(TOKEN, BASE_URL, &backward, expected));
    }

    #[test]
    fn older_docs_example_validates() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);

        assert!(validate(
            TOKEN,
            BASE_URL,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn json_body_is_validated_against_body_hash_and_signature() {
        let url = format!("{BASE_URL}&bodySHA256={BODY_HASH}");
        let expected = "a9nBmqA0ju/hNViExpshrM61xv4=";

        assert_eq!(body_sha256_hex(BODY.as_bytes()), BODY_HASH);
        assert_eq!(compute_signature(TOKEN, &url, &[]), expected);
        assert!(validate_json_body(TOKEN, &url, BODY.as_bytes(), expected));
    }

    #[test]
    fn json_body_with_only_the_hash_param_validates() {
        let url = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");

        assert!(validate_json_body(
            TOKEN,
            &url,
            BODY.as_bytes(),
            "y77kIzt2vzLz71DgmJGsen2scGs="
        ));
    }

    #[test]
    fn empty_json_body_validates_through_the_port_443_form() {
        let url = format!("{BASE_URL}&bodySHA256={EMPTY_BODY_HASH}");
        let with_port =
            format!("https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={EMPTY_BODY_HASH}");
        let expected = "Ldidvp12m26NI7eqEvxnEpkd9Hc=";

        assert_eq!(body_sha256_hex(b"{}"), EMPTY_BODY_HASH);
        assert_eq!(compute_signature(TOKEN, &with_port, &[]), expected);
        assert!(validate_json_body(TOKEN, &url, b"{}", expected));
    }

    #[test]
    fn json_body_with_tampered_body_or_missing_hash_is_rejected() {
        let url = format!("{BASE_URL}&bodySHA256={BODY_HASH}");
        let signature = "a9nBmqA0ju/hNViExpshrM61xv4=";

        assert!(!validate_json_body(
            TOKEN,
            &url,
            b"{\"property\": \"other\"}",
            signature
        ));
        assert!(!validate_json_body(
            TOKEN,
            BASE_URL,
            BODY.as_bytes(),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!validate_json_body(TOKEN, &url, BODY.as_bytes(), "WRONG"));
    }

    #[test]
    fn urls_with_credentials_validate_with_and_without_port() {
        let params = official_params();
        let url = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";

        assert_eq!(
            compute_signature(TOKEN, url, &params),
            "CukzLTc1tT5dXEDIHm/tKBanW10="
        );
        assert!(validate(
            TOKEN,
            url,
            &params,
            "CukzLTc1tT5dXEDIHm/tKBanW10="
        ));
        assert_eq!(
            compute_signature(
                TOKEN,
                "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
                &params
            ),
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="
        );
        assert!(validate(
            TOKEN,
            url,
            &params,
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="
        ));
    }

    #[test]
    fn url_with_username_only_validates() {
        let params = official_params();
        let url = "https://user@mycompany.com/myapp.php?foo=1&bar=2";

        assert_eq!(
            compute_signature(TOKEN, url, &params),
            "2YRLlVAflCqxaNicjMpJcSTgzSs="
        );
        assert!(validate(
            TOKEN,
            url,
            &params,
            "2YRLlVAflCqxaNicjMpJcSTgzSs="
        ));
    }

    #[test]
    fn raw_apostrophe_in_query_validates_against_node_normalised_form() {
        let params = official_params();
        let raw = format!("{BASE_URL}&Body=It's+amazing");
        let encoded = format!("{BASE_URL}&Body=It%27s+amazing");
        // twilio-node 6.2.0 signs the WHATWG serialisation, where ' becomes %27.
        let node_signature = "TfZzewPq8wqrGlMfyAud8+/IvJ0=";
        // Older twilio-node releases (and Python) sign the raw string.
        let raw_signature = "dsq4Ehbj6cs+KdTkpF5sSSplOWw=";

        assert_eq!(compute_signature(TOKEN, &encoded, &params), node_signature);
        assert_eq!(compute_signature(TOKEN, &raw, &params), raw_signature);
        assert!(validate(TOKEN, &raw, &params, node_signature));
        assert!(validate(TOKEN, &raw, &params, raw_signature));
        assert!(validate(TOKEN, &encoded, &params, node_signature));
    }

    #[test]
    fn localhost_form_post_vector_validates() {
        let url = "http://127.0.0.1:8080/twilio/sms?tenant=a";
        let params = pairs(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("Body", "Héllo wörld & more"),
            ("From", "+15005550006"),
            ("MessageSid", "SM11111111111111111111111111111111"),
            ("NumMedia", "0"),
            ("To", "+15558675310"),
        ]);
        let expected = "yNaeWIjmoZIu1sfZRJCUx3h/qXo=";

        assert_eq!(compute_signature(TOKEN, url, &params), expected);
        assert!(validate(TOKEN, url, &params, expected));
    }

    #[test]
    fn localhost_get_vector_validates() {
        let url = "http://127.0.0.1:8080/twilio/voice?CallSid=CA22222222222222222222222222222222&From=%2B15558675310";
        let expected = "32YOZGnQXKRBH3sRUAww4wcpXbY=";

        assert_eq!(compute_signature(TOKEN, url, &[]), expected);
        assert!(validate(TOKEN, url, &[], expected));
    }

    #[test]
    fn port_surgery_handles_userinfo_ipv6_and_missing_path() {
        assert_eq!(
            without_port("https://u:p@host:8443/a?b=1").as_deref(),
            Some("https://u:p@host/a?b=1")
        );
        assert_eq!(
            with_default_port("https://u:p@host/a").as_deref(),
            Some("https://u:p@host:443/a")
        );
        assert_eq!(
            with_default_port("http://host?x=1").as_deref(),
            Some("http://host:80?x=1")
        );
        assert_eq!(
            with_default_port("wss://host/stream").as_deref(),
            Some("wss://host:443/stream")
        );
        assert_eq!(
            without_port("http://[::1]:8080/x").as_deref(),
            Some("http://[::1]/x")
        );
        assert_eq!(
            with_default_port("http://[::1]/x").as_deref(),
            Some("http://[::1]:80/x")
        );
        assert_eq!(without_port("http://host/x"), None);
        assert_eq!(with_default_port("http://host:8080/x"), None);
        assert_eq!(with_default_port("not a url"), None);
    }
}
