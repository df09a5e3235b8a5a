//! The web console: static pages embedded in the binary (`control-api/console/`: our page,
//! script and style, and the vendored asciinema-player and noVNC; see `console/vendor/README.md`), served
//! at `/` and `/console/...` on the control API's listener. The pages are public; everything
//! they show comes from the API with the token the user signs in with. Every response of the
//! listener carries the security headers ([`security_headers`]).

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// (path under `/console/`, content type, content): every file of `console/` but the page,
/// the vendor README and fetch script (the table is written by `build.rs`).
const ASSETS: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

const INDEX: &[u8] = include_bytes!("../console/index.html");

/// No inline script, nothing from elsewhere, no framing. The terminal player's emulator is
/// WebAssembly (`wasm-unsafe-eval` allows compiling that, not JavaScript `eval`), and it sizes
/// its rows with style attributes, so inline styles are allowed (scripts are not).
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; \
    img-src 'self' blob: data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // Same binary, same files: a browser may keep them for a while, but revalidates.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from(body),
    )
        .into_response()
}

pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, body)| page(ct, body))
        .ok_or_else(|| ApiError::NotFound(format!("no console file {path}")))
}

/// Middleware: the headers every response of the listener carries.
pub async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}
