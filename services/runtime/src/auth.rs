//! Bearer tokens on gRPC: agents accept calls only from the coordinator
//! (`AGENT_TOKEN`), and the coordinator's operator service only from
//! operators (`ADMIN_TOKEN`). Health and reflection stay open so probes and
//! grpcurl `list` work without secrets.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::propagation::InjectTraceContext;
use crate::secrets::Secret;

/// Server side: rejects calls without `authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub struct RequireToken(Secret);

impl RequireToken {
    pub fn new(token: Secret) -> Self {
        Self(token)
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            // Constant time: the comparison does not reveal where it differs.
            Some(token) if self.0.matches(token) => Ok(request),
            _ => Err(Status::unauthenticated(
                "missing or wrong bearer token (authorization: Bearer <token>)",
            )),
        }
    }
}

/// Client side: trace context plus `authorization: Bearer <token>`.
#[derive(Clone, Debug)]
pub struct SendToken(Secret);

impl SendToken {
    pub fn new(token: Secret) -> Self {
        Self(token)
    }
}

impl Interceptor for SendToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = InjectTraceContext.call(request)?;
        let value = MetadataValue::try_from(format!("Bearer {}", self.0.expose()))
            .map_err(|_| Status::internal("token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_bearer_token_passes() {
        let mut require = RequireToken::new(Secret::new("s3cret"));
        let mut send = SendToken::new(Secret::new("s3cret"));
        let sent = send.call(Request::new(())).unwrap();
        assert!(require.call(sent).is_ok());
        let mut wrong = SendToken::new(Secret::new("guess"));
        let sent = wrong.call(Request::new(())).unwrap();
        let err = require.call(sent).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(!err.message().contains("s3cret"));
        assert!(require.call(Request::new(())).is_err());
    }
}
