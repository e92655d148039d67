//! Message templates: `{{variable}}` placeholders filled from a contact.

use std::collections::BTreeMap;

/// Fills `{{name}}` placeholders (spaces inside the braces allowed) from `vars`. An unknown
/// variable renders as empty text rather than leaking the placeholder to a recipient.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                // Uploaded columns are stored under normalised keys (`Renewal Date` →
                // `renewal_date`), so `{{Renewal Date}}` must find them too.
                if let Some(v) = vars.get(key).or_else(|| vars.get(&variable_key(key))) {
                    out.push_str(v);
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

pub use voice_agent_domain::variable_key;

/// The variable names a template uses, in order of first use.
pub fn variables(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let key = after[..end].trim().to_owned();
        if !key.is_empty() && !names.contains(&key) {
            names.push(key);
        }
        rest = &after[end + 2..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("name", "Ada"), ("day", "Monday")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_vanish() {
        assert_eq!(
            render("Hi {{name}}, see you {{ day }}{{missing}}!", &vars()),
            "Hi Ada, see you Monday!"
        );
    }

    #[test]
    fn column_names_match_whatever_their_case_and_spacing() {
        let vars: BTreeMap<String, String> = [("plan", "Gold"), ("renewal_date", "May 1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            render("{{Plan}} until {{Renewal Date}}", &vars),
            "Gold until May 1"
        );
    }

    #[test]
    fn unterminated_braces_stay_as_written() {
        assert_eq!(render("Hi {{name", &vars()), "Hi {{name");
        assert_eq!(render("no placeholders", &vars()), "no placeholders");
    }

    #[test]
    fn variables_are_listed_once_in_order() {
        assert_eq!(variables("{{b}} {{a}} {{ b }}"), vec!["b", "a"]);
    }
}
