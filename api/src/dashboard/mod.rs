//! `/dashboard`: the operators' page, compiled into the binary (no CDN, no build step). The
//! page itself holds no data: it asks for an `operator` or `admin` key and reads the JSON
//! APIs with it (`/health`, `/health/database`, `/health/payments`,
//! `/v1/analytics/summary`), so it sees exactly what that key may see.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX_HTML: &str = include_str!("index.html");
const SCRIPT_JS: &str = include_str!("dashboard.js");
const STYLE_CSS: &str = include_str!("dashboard.css");

/// Only this origin's own script, style and API; never framed (the key is typed here).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(index))
        .route("/dashboard/dashboard.js", web::get().to(script))
        .route("/dashboard/dashboard.css", web::get().to(style));
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // A new binary may ship a new page: revalidate rather than run a stale script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT_JS)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}
