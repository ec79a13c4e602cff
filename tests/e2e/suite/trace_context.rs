//! W3C trace context crosses the gRPC hop: with OTLP export on, the
//! coordinator and the mailcow-agent export spans of the same trace to a
//! collector (a real OTLP/gRPC server in this test process).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

/// service.name → trace ids seen.
type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<Vec<u8>>>>>;

struct Collector(Seen);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut seen = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    seen.entry(service.clone())
                        .or_default()
                        .insert(span.trace_id);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test]
async fn one_trace_spans_coordinator_and_agent() {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = TraceServiceServer::new(Collector(seen.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(collector)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let otel = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://{addr}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let stack = Stack::start(StackOptions {
        coordinator_env: otel.clone(),
        agent_env: otel,
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox("info@example.com");
    stack.mailcow.add_mailbox("alice@example.com");
    let alice = stack.authentik.add_user("alice", "alice@example.com");
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": "info@example.com", "send_as": true}}),
    );
    stack.authentik.add_member(&group, alice);
    stack.expect_done(&stack.sweep().await).await;

    let start = Instant::now();
    loop {
        {
            let seen = seen.lock().unwrap();
            if let (Some(c), Some(a)) = (seen.get("coordinator"), seen.get("mailcow-agent"))
                && c.intersection(a).next().is_some()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no shared trace id; services and trace counts: {:?}",
                seen.iter()
                    .map(|(k, v)| (k.clone(), v.len()))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
