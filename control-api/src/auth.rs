//! Bearer-token authentication. Tokens are configured as SHA-256 digests; the token itself is
//! never stored. Comparison is constant-time.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

pub use trailgate_proxy::config::Role;

use crate::ApiState;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub sha256: [u8; 32],
    pub role: Role,
}

impl Token {
    pub fn from_config(c: &trailgate_proxy::config::ApiTokenConfig) -> Option<Token> {
        let raw = hex::decode(&c.token_sha256).ok()?;
        Some(Token {
            name: c.name.clone(),
            sha256: raw.try_into().ok()?,
            role: c.role,
        })
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "expected `Authorization: Bearer <token>`",
            ))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Read from the configuration in force, so a reload adds and revokes tokens.
        let cfg = state.runtime.config();
        for t in cfg.api_tokens.iter().filter_map(Token::from_config) {
            if ct_eq(&t.sha256, &digest) {
                found = Some(t);
            }
        }
        let t = found.ok_or(ApiError::Unauthorized("unknown token"))?;
        Ok(Caller {
            name: t.name.clone(),
            role: t.role,
        })
    }
}

/// The caller's token name and role (the console shows them and hides what the role may not do).
#[utoipa::path(get, path = "/api/v1/whoami", security(("bearer" = [])),
    responses((status = 200, description = "`{name, role}`"), (status = 401)))]
pub async fn whoami(caller: Caller) -> axum::Json<serde_json::Value> {
    let role = match caller.role {
        Role::Admin => "admin",
        Role::Auditor => "auditor",
    };
    axum::Json(serde_json::json!({"name": caller.name, "role": role}))
}
