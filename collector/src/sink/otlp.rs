//! OTLP forwarding: records as OpenTelemetry logs (SPEC.md section 6) to
//! any OTLP/gRPC endpoint. A batch counts as written once the endpoint
//! accepted it.

use connlog_proto::export_request;
use connlog_proto::v1::ConnectionRecord;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::SinkError;

pub(crate) struct OtlpSink {
    name: String,
    client: Option<LogsServiceClient<Channel>>,
    endpoint: String,
    rt: tokio::runtime::Handle,
}

impl OtlpSink {
    pub(crate) fn new(index: usize, endpoint: String, rt: tokio::runtime::Handle) -> Self {
        Self {
            name: format!("sink[{index}] (otlp {endpoint})"),
            client: None,
            endpoint,
            rt,
        }
    }

    fn err(&self, message: impl ToString) -> SinkError {
        SinkError::Forward {
            sink: self.name.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn write(&mut self, records: &[&ConnectionRecord]) -> Result<(), SinkError> {
        let owned: Vec<ConnectionRecord> = records.iter().map(|r| (*r).clone()).collect();
        let request = export_request("connlog-collector", &owned);
        let cached = self.client.take();
        let endpoint = self.endpoint.clone();
        // Channels are made inside the runtime: they spawn their
        // connection task on it.
        let result = self.rt.block_on(async move {
            let mut client = match cached {
                Some(c) => c,
                None => {
                    let ep = Endpoint::from_shared(endpoint).map_err(|e| e.to_string())?;
                    LogsServiceClient::new(ep.connect_lazy())
                }
            };
            match client.export(request).await {
                Ok(_) => Ok(client),
                Err(status) => Err(format!(
                    "export failed: {:?}: {}",
                    status.code(),
                    status.message()
                )),
            }
        });
        match result {
            Ok(client) => {
                self.client = Some(client);
                Ok(())
            }
            Err(message) => Err(self.err(message)),
        }
    }
}
