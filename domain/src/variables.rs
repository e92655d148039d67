//! The one rule that turns a column header or a template placeholder into a variable key.

/// The key a contact variable is stored and looked up under: lower-case, every run of
/// characters other than letters and digits as one `_`, trimmed of `_` (MongoDB keys may
/// contain neither `.` nor a leading `$`). `"First Name"`, `"first-name"` and `"first_name"`
/// all become `first_name`, so a template can name a column the way its header spells it.
///
/// ```
/// assert_eq!(voice_agent_domain::variable_key(" Customer No. "), "customer_no");
/// assert_eq!(voice_agent_domain::variable_key("$$"), "");
/// ```
pub fn variable_key(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            key.push(c);
        } else if !key.ends_with('_') {
            key.push('_');
        }
    }
    key.trim_matches('_').to_owned()
}
