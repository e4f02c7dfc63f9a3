//! The web dashboard at `/ui`: a few static files embedded in the binary (no CDN, no build step, works offline).
//! The page talks to the REST API only, exactly as any other client does; it has no routes of its own beyond
//! its files, and `/` redirects here.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the dashboard lives. The trailing slash matters: the page refers to its files and to the API (`../v1`)
/// relatively, so it also works behind a proxy that mounts apsched under a prefix.
pub const UI_PATH: &str = "/ui/";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Everything the page may load comes from this server: the browser refuses any other origin, so a stray
/// external URL can never leak a viewer's visit (or token) elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The embedded files by name under `/ui/`, with their content types.
pub const ASSETS: [(&str, &str, &str); 3] = [
    ("", "text/html; charset=utf-8", INDEX_HTML),
    ("app.js", "text/javascript; charset=utf-8", APP_JS),
    ("style.css", "text/css; charset=utf-8", STYLE_CSS),
];

/// `/` and `/ui` redirect to `/ui/`; `/ui/<file>` serves an embedded file. Stateless, so it merges into any app.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::temporary(UI_PATH) }))
        .route("/ui", get(|| async { Redirect::permanent(UI_PATH) }));
    for (name, content_type, body) in ASSETS {
        router = router.route(&format!("{UI_PATH}{name}"), get(move || async move { asset(content_type, body) }));
    }
    router
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The files change only with the binary; revalidating keeps an upgraded server from serving a stale page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No asset may name another origin: the dashboard must work offline and load nothing from elsewhere.
    #[test]
    fn assets_name_no_external_url() {
        for (name, _, body) in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(!body.contains(scheme), "{name:?} mentions {scheme}");
            }
            assert!(!body.contains("@import"), "{name:?} imports a stylesheet");
        }
    }

    #[test]
    fn the_page_refers_to_its_files_relatively() {
        assert!(INDEX_HTML.contains(r#"src="app.js""#));
        assert!(INDEX_HTML.contains(r#"href="style.css""#));
    }
}
