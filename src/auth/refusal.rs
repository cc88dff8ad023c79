//! A guard's refusal with its own page. A request or data guard cannot
//! answer by itself: it fails with a status, and Rocket calls the catcher.
//! The guard leaves its page here and the catcher answers with it, so a
//! refusal by a guard (a form without a valid CSRF token, a closed sign-up)
//! reads exactly as the handler's own error page did.

use std::sync::Mutex;

use rocket::http::{Cookie, Header, Status};
use rocket::Request;
use rocket_dyn_templates::Template;

use crate::error::PageError;

/// What a refused request answers.
// A short-lived value on the refusal path; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(rocket::Responder)]
pub enum Refusal {
    Page(PageError),
    /// `429` with `Retry-After`: the page that explains the wait.
    #[response(status = 429)]
    Throttled(Template, Header<'static>),
}

impl Refusal {
    fn status(&self) -> Status {
        match self {
            Refusal::Page(p) => p.status,
            Refusal::Throttled(..) => Status::TooManyRequests,
        }
    }
}

#[derive(Default)]
struct Stored {
    refusal: Mutex<Option<Refusal>>,
    /// The CSRF cookie this request created, if any.
    csrf_cookie: Mutex<Option<Cookie<'static>>>,
}

/// Keeps `refusal` for the catcher and returns the status to fail with.
pub fn refuse(req: &Request<'_>, refusal: Refusal) -> Status {
    let status = refusal.status();
    let stored: &Stored = req.local_cache(Stored::default);
    // Rocket drops the cookies a request set when a guard fails; a visitor
    // who had no CSRF cookie got one with the error page before, and keeps
    // getting it.
    let cookies = req.cookies();
    let pending = cookies.get_pending(super::csrf::COOKIE);
    let original = cookies
        .get(super::csrf::COOKIE)
        .map(|c| c.value().to_string());
    if let Some(cookie) = pending.filter(|c| Some(c.value()) != original.as_deref()) {
        if let Ok(mut slot) = stored.csrf_cookie.lock() {
            *slot = Some(cookie);
        }
    }
    if let Ok(mut slot) = stored.refusal.lock() {
        *slot = Some(refusal);
    }
    status
}

/// The refusal a guard left on this request, for the catcher.
pub fn take(req: &Request<'_>) -> Option<Refusal> {
    let stored: &Stored = req.local_cache(Stored::default);
    if let Some(cookie) = stored.csrf_cookie.lock().ok().and_then(|mut c| c.take()) {
        req.cookies().add_private(cookie);
    }
    stored.refusal.lock().ok().and_then(|mut r| r.take())
}
