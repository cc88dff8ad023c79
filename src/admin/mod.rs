//! The tenant admin dashboard under `/admin`.

pub fn routes() -> Vec<rocket::Route> {
    Vec::new()
}
