//! The `contact_lists` and `contacts` collections.
