//! **The review page** (`/review`) and the feedback widget (`/v1/widget.js`): where people who
//! never open a terminal correct what the served program answered.
//!
//! Everything is rendered on the server (HTML, and charts as inline SVG) with a little vanilla
//! JavaScript for the keyboard; the assets are compiled into the binary (`include_str!`), so
//! there is no build step. Pages read the store through its review queries
//! (`Store::review_queue` and friends) and write feedback through [`Service::feedback`], the
//! API's own path, with source `annotation` and the reviewer's name as the user id.
//!
//! Layout: `auth.rs` (reviewers, signed session cookies, CSRF tokens, sign-in), `queue.rs` (the
//! queue, one run at a time, the correction form), `dashboard.rs` (versions, feedback over time,
//! label confusion), `charts.rs` (the SVG), `pages.rs` (the page frame and HTML helpers),
//! `widget.rs` (the widget script and its CORS).
//!
//! [`Service::feedback`]: super::Service::feedback

mod auth;
mod charts;
mod dashboard;
mod form;
mod pages;
mod queue;
mod widget;

use axum::routing::{get, post};
use axum::Router;

use super::app::Shared;

pub use self::auth::{Reviewers, ReviewersError};
pub(super) use self::widget::cors;
pub use self::widget::{AllowedOrigins, BadOrigin};

/// The routes under `/review` (each checks its own access) and `/v1/widget.js`.
pub(super) fn router(state: Shared) -> Router<Shared> {
    let signed_in = Router::new()
        .route("/review", get(queue::list))
        .route("/review/next", get(queue::next))
        .route("/review/run/{id}", get(queue::show).post(queue::submit))
        .route("/review/dashboard", get(dashboard::show))
        .route("/review/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_reviewer));
    Router::new()
        .merge(signed_in)
        .route("/review/login", get(auth::login_form).post(auth::login))
        .route("/review/assets/{name}", get(pages::asset))
        .route("/v1/widget.js", get(widget::script))
        .route_layer(axum::middleware::from_fn(auth::same_origin_posts))
}
