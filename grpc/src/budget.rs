//! The byte budget of request bodies being read, shared by every connection of the gRPC
//! listener: the twin of the HTTP listener's (`rekor_api::limits`). The message-size cap bounds
//! one request; this bounds them all together, so that thousands of streams each sending most of
//! a 4 MiB message cannot hold gigabytes. A frame that would take the total over the budget
//! fails its request with RESOURCE_EXHAUSTED (retryable) and nothing is kept for it; the bytes a
//! request held are given back when tonic drops its body (once the message is decoded).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use rekor_api::limits::BodyBudget;
use tonic::body::Body;
use tonic::Status;

use crate::metrics::GrpcMetrics;

/// A tower layer that counts each request body against one shared budget.
#[derive(Clone)]
pub struct BudgetLayer {
    budget: Arc<BodyBudget>,
    metrics: GrpcMetrics,
}

impl BudgetLayer {
    pub fn new(budget: Arc<BodyBudget>, metrics: GrpcMetrics) -> Self {
        BudgetLayer { budget, metrics }
    }
}

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`BudgetLayer`] makes.
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    layer: BudgetLayer,
}

impl<S> tower::Service<http::Request<Body>> for BudgetService<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let layer = self.layer.clone();
        let request = request.map(|inner| {
            Body::new(GuardedBody {
                inner,
                held: Held {
                    budget: layer.budget,
                    bytes: 0,
                },
                metrics: layer.metrics,
            })
        });
        self.inner.call(request)
    }
}

/// Bytes one request holds, given back on drop.
struct Held {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A request body whose data frames are taken from the budget as they arrive.
struct GuardedBody {
    inner: Body,
    held: Held,
    metrics: GrpcMetrics,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if len > 0 {
                    if !this.held.budget.try_take(len) {
                        this.metrics.refused.with_label_values(&["budget"]).inc();
                        return Poll::Ready(Some(Err(Status::resource_exhausted(
                            "server busy reading other requests; retry",
                        ))));
                    }
                    this.held.bytes += len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(status))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
