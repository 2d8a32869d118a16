//! The management API's OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice management API", description = "Models, online endpoints and deployments. Authenticate with 'Authorization: Bearer <admin token>'."),
    paths(
        crate::artifacts::upload,
        crate::models::create, crate::models::show, crate::models::list_all, crate::models::list_versions, crate::models::remove,
        crate::registered_environments::create, crate::registered_environments::show,
        crate::registered_environments::list_all, crate::registered_environments::list_versions,
        crate::data_assets::create, crate::data_assets::show, crate::data_assets::list_all, crate::data_assets::list_versions,
        crate::usage::show,
        crate::endpoints::create, crate::endpoints::update, crate::endpoints::show, crate::endpoints::list, crate::endpoints::remove,
        crate::endpoints::get_credentials, crate::endpoints::regenerate_keys,
        crate::deployments::create, crate::deployments::update, crate::deployments::show, crate::deployments::list, crate::deployments::remove,
        crate::deployments::logs,
        crate::rollouts::start, crate::rollouts::show, crate::rollouts::abort,
        crate::batch::endpoints::create, crate::batch::endpoints::update, crate::batch::endpoints::show,
        crate::batch::endpoints::list, crate::batch::endpoints::remove,
        crate::batch::deployments::create_or_update, crate::batch::deployments::show, crate::batch::deployments::list,
        crate::batch::deployments::remove,
        crate::batch::jobs::invoke, crate::batch::jobs::list_for_endpoint, crate::batch::jobs::list, crate::batch::jobs::show,
        crate::batch::jobs::cancel, crate::batch::jobs::outputs, crate::batch::jobs::logs,
        crate::batch::computes::create, crate::batch::computes::update, crate::batch::computes::show,
        crate::batch::computes::list, crate::batch::computes::remove,
        crate::serverless::list_catalog, crate::serverless::show_catalog_model, crate::serverless::add_catalog_model,
        crate::serverless::remove_catalog_model,
        crate::serverless::create, crate::serverless::show, crate::serverless::list, crate::serverless::remove,
        crate::serverless::get_credentials, crate::serverless::regenerate_keys, crate::serverless::usage,
    ),
    tags((name = "models"), (name = "environments"), (name = "data"), (name = "usage"), (name = "online-endpoints"), (name = "online-deployments"),
        (name = "batch-endpoints"), (name = "batch-deployments"), (name = "jobs"), (name = "computes"),
        (name = "model-catalog"), (name = "serverless-endpoints"))
)]
struct ApiDoc;

/// The document as pretty JSON, as served and as checked in.
pub fn openapi_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_pretty_json().expect("the OpenAPI document serializes")
}

pub async fn serve() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json())
}
