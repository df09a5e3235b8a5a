//! The OpenAPI document, generated from the handlers' annotations and the record types.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::auth::Caller;

#[derive(OpenApi)]
#[openapi(
    info(title = "Trailgate control API", description = "Sessions, kills, trails, VNC screen snapshots and settings policies of the Trailgate recording gateway."),
    paths(
        crate::routes::list_sessions,
        crate::routes::get_session,
        crate::routes::get_channels,
        crate::routes::kill_session,
        crate::routes::trail_downloads,
        crate::trail::download,
        crate::trail::verify,
        crate::auth::whoami,
        crate::snapshot::snapshot,
        crate::snapshot::replay,
        crate::files::list,
        crate::files::content,
        crate::routes::metrics,
        crate::configuration::list_policies,
        crate::configuration::get_policy,
        crate::configuration::create_policy,
        crate::configuration::put_policy,
        crate::configuration::delete_policy,
        crate::configuration::get_vnc_options,
        crate::configuration::put_vnc_options,
        crate::configuration::changes,
    ),
    components(schemas(
        crate::routes::SessionList,
        crate::routes::Meta,
        crate::routes::ChannelList,
        crate::routes::DownloadList,
        crate::routes::KillRequest,
        trailgate_recorder::record::SessionRecord,
        trailgate_recorder::catalog::TrailDownload,
        trailgate_recorder::catalog::ConfigChange,
        trailgate_recorder::transfers::TransferredFile,
        trailgate_recorder::transfers::FileOperation,
        trailgate_proxy::policy::SettingsPolicy,
        trailgate_proxy::policy::VncOptions,
    )),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn serve(_c: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
