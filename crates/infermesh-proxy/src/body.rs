//! Request and response bodies on their way through the proxy: the one body type the
//! pipeline hands around ([`ProxyBody`]), the size limit, and [`RequestBody`] — the
//! bytes already read (and maybe rewritten) at the front of a request plus the rest
//! of the stream, which can be sent again (retry) as long as the rest was never
//! polled, and which is never buffered whole unless it is small. A gRPC request's
//! rest can carry a [`StreamGuard`]: every chunk read from the client passes it
//! first, and the first chunk it refuses becomes a body error instead (the upstream
//! stream is reset, never completed) with the reason kept in a [`Verdict`].

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use infermesh_tfserving::Status;

use crate::error::Failure;
use crate::grpc_scan::StreamGuard;

/// The boxed error every body carries.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type of requests and responses inside the proxy.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The client's body with the configured size limit applied.
pub type Inbound = Limited<Incoming>;

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The body of a request being forwarded: `head` (bytes already read from the client,
/// possibly rewritten) followed by the unread rest of the client's stream.
#[derive(Debug, Clone)]
pub struct RequestBody {
    head: Bytes,
    /// Trailers read while buffering (only when `tail` is `None`).
    trailers: Option<HeaderMap>,
    /// The unread rest; `None` when the whole body is in `head`.
    tail: Option<Tail>,
    /// Why the rest's guard refused the stream, once it has.
    verdict: Verdict,
}

/// The unread rest of a client body, taken by the first attempt that polls it.
#[derive(Debug, Clone)]
struct Tail(Arc<Mutex<Option<Rest>>>);

/// The client's stream after the head, checked by a guard when one is set.
#[derive(Debug)]
struct Rest {
    body: Inbound,
    guard: Option<StreamGuard>,
    verdict: Verdict,
}

/// Why a request stream was refused after the pipeline let it through; shared by
/// every clone of a [`RequestBody`], so the failure can be answered as what it is.
#[derive(Clone, Debug, Default)]
pub struct Verdict(Arc<OnceLock<Status>>);

/// How much of a body was read by [`read_up_to`].
pub enum ReadUpTo {
    /// All of it.
    Complete,
    /// The limit was reached first; the rest is still in the stream.
    Partial,
}

impl RequestBody {
    /// A body of which nothing was read yet.
    pub fn streaming(body: Inbound) -> RequestBody {
        RequestBody::new(Bytes::new(), None, Some(body))
    }

    pub fn new(head: Bytes, trailers: Option<HeaderMap>, rest: Option<Inbound>) -> RequestBody {
        let verdict = Verdict::default();
        let rest = rest.map(|body| Rest {
            body,
            guard: None,
            verdict: verdict.clone(),
        });
        RequestBody::from_rest(head, trailers, rest, verdict)
    }

    fn from_rest(
        head: Bytes,
        trailers: Option<HeaderMap>,
        rest: Option<Rest>,
        verdict: Verdict,
    ) -> RequestBody {
        RequestBody {
            head,
            trailers,
            tail: rest.map(|r| Tail(Arc::new(Mutex::new(Some(r))))),
            verdict,
        }
    }

    /// Checks the unread rest with `guard` (which has seen the head) as it is read.
    pub fn guarded(self, guard: StreamGuard) -> RequestBody {
        if let Some(Tail(slot)) = &self.tail
            && let Some(rest) = lock(slot).as_mut()
        {
            rest.guard = Some(guard);
        }
        self
    }

    /// Where the guard's refusal, if any, will be found.
    pub fn verdict(&self) -> Verdict {
        self.verdict.clone()
    }

    /// The bytes read so far (all of them when [`Self::is_complete`]).
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// Replaces the bytes read so far (a rewrite); the rest is untouched.
    pub fn with_head(self, head: Bytes) -> RequestBody {
        RequestBody { head, ..self }
    }

    /// Whether the whole body has been read into memory.
    pub fn is_complete(&self) -> bool {
        self.tail.is_none()
    }

    /// Whether the body can still be sent (again): it is complete, or no attempt
    /// has polled its rest yet.
    pub fn is_replayable(&self) -> bool {
        match &self.tail {
            None => true,
            Some(Tail(slot)) => lock(slot).is_some(),
        }
    }

    /// A body for one attempt. Sending it consumes the rest of the stream, after
    /// which [`Self::is_replayable`] turns false.
    pub fn attempt(&self) -> ProxyBody {
        AttemptBody {
            head: (!self.head.is_empty()).then(|| self.head.clone()),
            trailers: if self.tail.is_none() {
                self.trailers.clone()
            } else {
                None
            },
            tail: self.tail.clone(),
            taken: None,
        }
        .boxed()
    }

    /// Reads more of the stream into `head` until `limit` bytes are held or the body
    /// ends. Errors are the client's body errors (including the size limit).
    pub async fn read_up_to(self, limit: usize) -> Result<(RequestBody, ReadUpTo), BoxError> {
        let Some(Tail(slot)) = self.tail else {
            return Ok((self, ReadUpTo::Complete));
        };
        let Some(mut rest) = lock(&slot).take() else {
            return Err("request body was already consumed".into());
        };
        let verdict = self.verdict;
        let complete = |head: BytesMut, trailers| {
            let body = RequestBody::from_rest(head.freeze(), trailers, None, verdict.clone());
            Ok((body, ReadUpTo::Complete))
        };
        let mut head = BytesMut::from(&self.head[..]);
        while head.len() < limit {
            match rest.frame().await {
                None => return complete(head, None),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => head.extend_from_slice(&data),
                    Err(frame) => return complete(head, frame.into_trailers().ok()),
                },
            }
        }
        if rest.is_end_stream() {
            return complete(head, None);
        }
        Ok((
            RequestBody::from_rest(head.freeze(), None, Some(rest), verdict),
            ReadUpTo::Partial,
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Verdict {
    /// The refusal, if the guard refused the stream.
    pub fn get(&self) -> Option<&Status> {
        self.0.get()
    }

    /// A failure that happened while (or after) the stream was refused is answered
    /// as the refusal (the request's fault, `INVALID_ARGUMENT`), not as whatever the
    /// aborted upload looked like upstream.
    pub fn explain(&self, failure: Failure) -> Failure {
        match self.get() {
            Some(status) => Failure::Request(status.clone()),
            None => failure,
        }
    }
}

impl Rest {
    /// Passes a frame through the guard: data is fed to it, the end of the stream
    /// (trailers or none) must come after a complete message.
    fn check(&mut self, frame: Option<&Frame<Bytes>>) -> Result<(), BoxError> {
        let Some(guard) = self.guard.as_mut() else {
            return Ok(());
        };
        let checked = match frame {
            Some(frame) => match frame.data_ref() {
                Some(data) => guard.feed(data),
                None if frame.is_trailers() => guard.finish(),
                None => Ok(()),
            },
            None => guard.finish(),
        };
        checked.map_err(|status| {
            tracing::debug!(%status, "refusing the rest of a gRPC request stream");
            let _ = self.verdict.0.set(status.clone());
            Box::new(status) as BoxError
        })
    }
}

impl Body for Rest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(status) = this.verdict.get() {
            return Poll::Ready(Some(Err(Box::new(status.clone()))));
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match frame {
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(frame)) => Poll::Ready(Some(this.check(Some(&frame)).map(|()| frame))),
            None => Poll::Ready(this.check(None).err().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream() && self.guard.as_ref().is_none_or(StreamGuard::is_done)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One attempt's view of a [`RequestBody`].
struct AttemptBody {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    tail: Option<Tail>,
    taken: Option<Rest>,
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(Tail(slot)) = this.tail.take() {
            match lock(&slot).take() {
                Some(rest) => this.taken = Some(rest),
                None => return Poll::Ready(Some(Err("request body was already consumed".into()))),
            }
        }
        if let Some(rest) = this.taken.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.tail.is_none()
            && self.taken.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = match (&self.taken, &self.tail) {
            (Some(b), _) => b.size_hint(),
            (None, Some(_)) => SizeHint::default(),
            (None, None) => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(head + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(head + upper);
        }
        hint
    }
}
