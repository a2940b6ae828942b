//! The async runtime openraft runs on. In production that is tokio. Under
//! `--cfg madsim` it is madsim's executor, timers and seeded RNG: openraft's
//! own `TokioRuntime` draws election timeouts from `rand::thread_rng`, which
//! madsim does not intercept, so a seed would stop replaying.

#[cfg(not(madsim))]
pub type Runtime = openraft::TokioRuntime;

#[cfg(madsim)]
pub use sim::Runtime;

#[cfg(madsim)]
mod sim {
    use openraft::async_runtime::TokioOneShotSender;
    use openraft::{AsyncRuntime, OptionalSend, TokioInstant};
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Runtime;

    /// A future bounded by a deadline (madsim's own timeout future cannot
    /// be named in a type).
    pub struct Timeout<F> {
        future: Pin<Box<F>>,
        sleep: Pin<Box<madsim::time::Sleep>>,
    }

    #[derive(Debug)]
    pub struct Elapsed;

    impl std::fmt::Display for Elapsed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("deadline elapsed")
        }
    }

    impl<R, F: Future<Output = R>> Future for Timeout<F> {
        type Output = Result<R, Elapsed>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if let Poll::Ready(r) = self.future.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl AsyncRuntime for Runtime {
        type JoinError = madsim::task::JoinError;
        type JoinHandle<T: OptionalSend + 'static> = madsim::task::JoinHandle<T>;
        type Sleep = madsim::time::Sleep;
        type Instant = TokioInstant;
        type TimeoutError = Elapsed;
        type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
        type ThreadLocalRng = madsim::rand::GlobalRng;
        type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
        type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
        type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

        fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
        where
            T: Future + OptionalSend + 'static,
            T::Output: OptionalSend + 'static,
        {
            madsim::task::spawn(future)
        }

        fn sleep(duration: Duration) -> Self::Sleep {
            madsim::time::sleep(duration)
        }

        fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
            madsim::time::sleep_until(deadline.into_std())
        }

        fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
            Timeout { future: Box::pin(future), sleep: Box::pin(madsim::time::sleep(duration)) }
        }

        fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
            Timeout { future: Box::pin(future), sleep: Box::pin(madsim::time::sleep_until(deadline.into_std())) }
        }

        fn is_panic(join_error: &Self::JoinError) -> bool {
            join_error.is_panic()
        }

        fn thread_rng() -> Self::ThreadLocalRng {
            madsim::rand::thread_rng()
        }

        fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
        where
            T: OptionalSend,
        {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (TokioOneShotSender(tx), rx)
        }
    }
}
