//! The query of a list request (`GET …/Messages.json`, `GET …/Calls.json`): filters, and
//! Twilio's paging parameters and page URIs.

use chrono::NaiveDate;
use url::form_urlencoded;

use super::ApiError;

/// Page size when the request names none.
const DEFAULT_PAGE_SIZE: usize = 50;
/// Twilio's largest page.
const MAX_PAGE_SIZE: usize = 1000;

/// A parsed list query.
pub(super) struct ListQuery<'a> {
    path: &'a str,
    params: Vec<(String, String)>,
    /// `PageSize`.
    pub(super) page_size: usize,
    /// `Page`, from 0.
    pub(super) page: usize,
}

impl<'a> ListQuery<'a> {
    /// Parses `query` of a request to `path`; a bad `PageSize` or `Page` is Twilio's error.
    pub(super) fn parse(path: &'a str, query: &str) -> Result<Self, ApiError> {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let mut q = Self {
            path,
            params,
            page_size: DEFAULT_PAGE_SIZE,
            page: 0,
        };
        if let Some(raw) = q.first("PageSize") {
            q.page_size = raw
                .parse::<usize>()
                .ok()
                .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        20007,
                        format!("PageSize must be between 1 and {MAX_PAGE_SIZE}, got {raw}."),
                    )
                })?;
        }
        if let Some(raw) = q.first("Page") {
            q.page = raw
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request(20001, format!("Invalid Page: {raw}")))?;
        }
        Ok(q)
    }

    /// The first value of a parameter.
    pub(super) fn first(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A date filter (`YYYY-MM-DD`, or a longer time whose first ten characters are one).
    pub(super) fn date(&self, name: &'static str) -> Result<Option<NaiveDate>, ApiError> {
        self.first(name)
            .map(|raw| {
                raw.get(..10)
                    .and_then(|day| NaiveDate::parse_from_str(day, "%Y-%m-%d").ok())
                    .ok_or_else(|| ApiError::bad_request(20001, format!("Invalid {name}: {raw}")))
            })
            .transpose()
    }

    /// `PageToken`.
    pub(super) fn token(&self) -> Option<&str> {
        self.first("PageToken")
    }

    /// The URI of a page, echoing the given filters (those present, in this order) as Twilio
    /// does.
    pub(super) fn page_uri(&self, filters: &[&str], page: usize, token: Option<&str>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for name in filters {
            if let Some(value) = self.first(name) {
                query.append_pair(name, value);
            }
        }
        query.append_pair("PageSize", &self.page_size.to_string());
        query.append_pair("Page", &page.to_string());
        if let Some(token) = token {
            query.append_pair("PageToken", token);
        }
        format!("{}?{}", self.path, query.finish())
    }
}
