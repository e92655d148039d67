//! The web app: the static files of `web/dist` (built by `npm run build` in `web/`), served by
//! the api itself so one process serves the product. Hashed assets are cached for a year;
//! `index.html` is never cached, and answers every client route (any other GET outside `/api`,
//! `/twilio`, `/healthz` and `/metrics`) so a reload or a shared link opens the right page.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// Prefixes that are never client routes: an unknown path there is a 404, not the app.
const NOT_THE_APP: [&str; 4] = ["/api/", "/twilio/", "/healthz", "/metrics"];

/// The app's files under `dir`, or a page saying how to build them when there are none.
pub fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    let index = dir.join("index.html");
    if !index.is_file() {
        let hint = "<!doctype html><title>Voice Agent</title><h1>Voice Agent</h1>\
             <p>The web app is not built: run <code>npm ci &amp;&amp; npm run build</code> in \
             <code>web/</code> (scripts/run.sh does it), or point <code>WEB_DIR</code> at a \
             build. The API is at <a href=\"/api/docs\">/api/docs</a>.</p>";
        return Router::new().fallback(move |req: Request<Body>| async move {
            if is_app_route(&req) {
                (StatusCode::OK, Html(hint)).into_response()
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        });
    }
    let assets = ServeDir::new(dir.join("assets"));
    let files = ServeDir::new(dir).append_index_html_on_directories(false);
    let index = ServeFile::new(index);
    Router::new()
        .nest_service(
            "/assets",
            tower::service_fn(move |req: Request<Body>| {
                let assets = assets.clone();
                async move {
                    let mut res = assets.oneshot(req).await?.into_response();
                    if res.status().is_success() {
                        // Vite puts a content hash in every asset's name.
                        res.headers_mut().insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=31536000, immutable"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(res)
                }
            }),
        )
        .fallback_service(tower::service_fn(move |req: Request<Body>| {
            let files = files.clone();
            let index = index.clone();
            async move {
                if !is_app_route(&req) {
                    return Ok(StatusCode::NOT_FOUND.into_response());
                }
                let path = req.uri().path().to_owned();
                let res = if path.split('/').any(|segment| segment.starts_with('.')) {
                    // Never a dotfile (.env, .git) of a misdirected WEB_DIR.
                    StatusCode::NOT_FOUND.into_response()
                } else if path != "/" && has_extension(&path) {
                    // favicon.svg, robots.txt, …: the file, or a plain 404.
                    files.oneshot(req).await?.into_response()
                } else {
                    no_cache(index.oneshot(req).await?.into_response())
                };
                Ok::<Response, std::convert::Infallible>(res)
            }
        }))
}

/// `WEB_DIR`, or `web/dist` beside the working directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("web/dist")
}

fn is_app_route(req: &Request<Body>) -> bool {
    let path = req.uri().path();
    (req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD)
        && !NOT_THE_APP
            .iter()
            .any(|p| path.starts_with(p) || path == p.trim_end_matches('/'))
}

fn has_extension(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

fn no_cache(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).expect("a request")
    }

    #[tokio::test]
    async fn client_routes_get_the_app_and_assets_are_cached_for_a_year() {
        let dir = std::env::temp_dir().join(format!("va-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).expect("temp dir");
        std::fs::write(dir.join("index.html"), "<!doctype html>app").expect("write");
        std::fs::write(dir.join("assets/app-1a2b.js"), "console.log(1)").expect("write");
        let app: Router = routes(&dir);

        let res = app
            .clone()
            .oneshot(get("/campaigns/c-1"))
            .await
            .expect("answer");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-cache");

        let res = app
            .clone()
            .oneshot(get("/assets/app-1a2b.js"))
            .await
            .expect("answer");
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );

        std::fs::write(dir.join(".env"), "SECRET=1").expect("write");
        for path in [
            "/assets/missing.js",
            "/api/nothing",
            "/twilio/x",
            "/metrics",
            "/nope.txt",
            "/.env",
        ] {
            let res = app.clone().oneshot(get(path)).await.expect("answer");
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let post = Request::post("/campaigns")
            .body(Body::empty())
            .expect("a request");
        assert_eq!(
            app.oneshot(post).await.expect("answer").status(),
            StatusCode::NOT_FOUND
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn without_a_build_the_app_routes_say_how_to_build_it() {
        let app: Router = routes(Path::new("/nonexistent/web/dist"));
        let res = app.clone().oneshot(get("/")).await.expect("answer");
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.oneshot(get("/api/x")).await.expect("answer");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
