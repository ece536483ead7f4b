//! Small helpers over kube's client that every layer uses (the sync pass, `ferry diff`, the
//! ApplicationSet controller, the Git credentials): kept at the bottom so none of them reaches
//! into another for them.

/// The API server's own words for a failed call.
pub fn api_words(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}
