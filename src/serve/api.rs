//! The routes: the page, the model card, `/v1/predict`, `/v1/explain` and `/healthz`. Every
//! answer that is not the page or a picture is JSON; every error is `{"error": "..."}` with
//! its status.

use super::batch::{Batcher, Job, Refused};
use super::Limits;
use crate::explain::{self, Method};
use crate::infer::label_name;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The page at `/`: one file, inline CSS and JS, nothing fetched from elsewhere.
const PAGE: &str = include_str!("page.html");

/// What the routes share.
pub struct App {
    pub batcher: Batcher,
    pub limits: Limits,
    pub labels: Vec<String>,
    /// A multi-label model (K sigmoid outputs): a text gets every label at 0.5 or more.
    pub multi_label: bool,
    /// `GET /v1/model`, serialised once.
    pub card: Vec<u8>,
    /// The model graph, drawn from the model file's layers.
    pub model_svg: String,
    /// history.svg from the model's run folder, when it is there.
    pub history_svg: Option<String>,
}

/// The routes, each request under the deadline (bodies are read, within --max-body, by `parse`).
pub fn router(app: Arc<App>) -> Router {
    let limits = app.limits;
    Router::new()
        .route("/", only(get(page)))
        .route("/healthz", only(get(healthz)))
        .route("/v1/model", only(get(model)))
        .route("/model.svg", only(get(model_svg)))
        .route("/history.svg", only(get(history_svg)))
        .route("/v1/predict", only(post(predict)))
        .route("/v1/explain", only(post(explain_route)))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            limits.timeout,
            deadline,
        ))
        .with_state(app)
}

/// A route that answers other methods with a JSON 405.
fn only(r: MethodRouter<Arc<App>>) -> MethodRouter<Arc<App>> {
    r.fallback(|| async {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use GET for /, /healthz, /v1/model and the pictures, POST for \
             /v1/predict and /v1/explain",
        )
    })
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

/// A request refused: the status and the message of its JSON error.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("JSON values serialise");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_found(req: Request) -> Response {
    let path: String = req.uri().path().chars().take(200).collect();
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such path: {path}; the endpoints are GET /, GET /healthz, GET /v1/model, POST \
             /v1/predict and POST /v1/explain"
        ),
    )
}

/// Ends a request that takes longer than the limit, however far it got (a client sending its
/// body slowly, or a long queue), so no client holds a connection and its memory for ever.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no answer within --timeout {} s: the request came too slowly or the server is \
                 too busy; retry",
                limit.as_secs_f64()
            ),
        ),
    }
}

async fn page() -> Response {
    // The page may load only what this server serves: it works offline, and pasted text
    // cannot pull anything in.
    let csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
               img-src 'self'; connect-src 'self'";
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        PAGE,
    )
        .into_response()
}

fn svg(body: String) -> Response {
    // A picture from the run folder is shown, never run.
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn model_svg(State(app): State<Arc<App>>) -> Response {
    svg(app.model_svg.clone())
}

async fn history_svg(State(app): State<Arc<App>>) -> Response {
    match &app.history_svg {
        Some(s) => svg(s.clone()),
        None => error(
            StatusCode::NOT_FOUND,
            "no history plot: the model file's folder has no history.svg (imdb-lstm plot RUN_DIR \
             draws it from history.json)",
        ),
    }
}

async fn model(State(app): State<Arc<App>>) -> Response {
    let mut r = app.card.clone().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    if !app.batcher.alive() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model has stopped answering",
        );
    }
    let c = &app.batcher.counts;
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "batches": c.batches.load(Relaxed),
            "texts": c.texts.load(Relaxed),
            "explained": c.explained.load(Relaxed),
        }),
    )
}

/// The body as a `T`, or the error to answer: over the limit (413), not JSON or not the
/// request's shape (400).
async fn parse<T: for<'de> Deserialize<'de>>(
    req: Request,
    limits: &Limits,
    shape: &str,
) -> Result<T, Refusal> {
    let too_large = || {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than --max-body {} bytes: send fewer or shorter texts per \
                 request",
                limits.max_body
            ),
        )
    };
    // A body announced as too large is refused before a byte of it is read.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limits.max_body as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limits.max_body)
        .await
        .map_err(|e| {
            // The length limit, or a body that broke off.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            match over {
                true => too_large(),
                false => Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                ),
            }
        })?;
    // serde reads a struct from a list too (`[["a review"]]`): only an object is a request.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
    {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body is not {shape}: it must be a JSON object"),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "is not",
            _ => "is not JSON, so not",
        };
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body {what} {shape}: {e}"),
        )
    })
}

/// Checks one text against the length limit; `which` names it in the message.
fn check_text(text: &str, which: &str, limits: &Limits) -> Result<(), Refusal> {
    if text.len() > limits.max_text_bytes {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{which} is {} bytes, more than --max-text-bytes {}: shorten it",
                text.len(),
                limits.max_text_bytes
            ),
        ));
    }
    Ok(())
}

/// Queues `job` and waits for its answer.
async fn ask<T>(app: &App, job: Job, rx: oneshot::Receiver<T>) -> Result<T, Refusal> {
    let stopped = || {
        Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model has stopped answering".into(),
        )
    };
    match app.batcher.submit(job) {
        Ok(()) => rx.await.map_err(|_| stopped()),
        Err(Refused::Full) => Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {} requests are already waiting for the model; retry shortly",
                app.limits.queue
            ),
        )),
        Err(Refused::Stopped) => Err(stopped()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    texts: Vec<String>,
}

const PREDICT_SHAPE: &str = r#"a predict request ({"texts": ["a review", ...]})"#;
const EXPLAIN_SHAPE: &str = r#"an explain request ({"text": "a review", "method": "occlusion" or "integrated-gradients", "steps": N})"#;

async fn predict(State(app): State<Arc<App>>, body: Request) -> Response {
    let r = async {
        let req: PredictRequest = parse(body, &app.limits, PREDICT_SHAPE).await?;
        let n = req.texts.len();
        if n == 0 {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "texts is empty: give at least one text".into(),
            ));
        }
        if n > app.limits.max_texts {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{n} texts in one request, more than --max-texts {}: split them",
                    app.limits.max_texts
                ),
            ));
        }
        for (i, t) in req.texts.iter().enumerate() {
            check_text(t, &format!("texts[{i}]"), &app.limits)?;
        }
        let (reply, rx) = oneshot::channel();
        let probs = ask(
            &app,
            Job::Predict {
                texts: req.texts,
                reply,
            },
            rx,
        )
        .await?;
        let predictions: Vec<Value> = probs
            .iter()
            .enumerate()
            .map(|(i, p)| prediction(&app.labels, app.multi_label, i, p))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "predictions": predictions }),
        ))
    };
    r.await.unwrap_or_else(|e| e.into_response())
}

/// Text `index`'s answer in `predict --json`'s shape (`index`, `line`, `probability`, `label`;
/// `probability` is P(positive) for a two-label model, as there, else the label's), with every
/// label's probability by name; a multi-label model adds `labels`, those at 0.5 or more, most
/// probable first (`label` is the most probable one).
fn prediction(labels: &[String], multi_label: bool, index: usize, p: &[f32]) -> Value {
    let best = (1..p.len()).fold(0, |m, c| if p[c] > p[m] { c } else { m });
    let probability = if p.len() == 2 && !multi_label {
        p[1]
    } else {
        p[best]
    };
    let all: serde_json::Map<String, Value> = labels
        .iter()
        .zip(p)
        .map(|(l, &v)| (l.clone(), json!(v)))
        .collect();
    let mut answer = json!({
        "index": index,
        "line": index + 1,
        "probability": probability,
        "label": label_name(labels, best),
        "probabilities": all,
    });
    if multi_label {
        let mut given: Vec<usize> = (0..p.len()).filter(|&c| p[c] >= 0.5).collect();
        given.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let names: Vec<&str> = given.iter().map(|&c| labels[c].as_str()).collect();
        answer["labels"] = json!(names);
    }
    answer
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    text: String,
    method: Option<String>,
    steps: Option<usize>,
}

async fn explain_route(State(app): State<Arc<App>>, body: Request) -> Response {
    let r = async {
        let req: ExplainRequest = parse(body, &app.limits, EXPLAIN_SHAPE).await?;
        check_text(&req.text, "text", &app.limits)?;
        let bad = |m: String| Refusal(StatusCode::BAD_REQUEST, m);
        let name = req.method.as_deref().unwrap_or(explain::METHODS[1]);
        let Some(method) = Method::from_name(name, req.steps) else {
            let shown: String = name.chars().take(100).collect();
            return Err(bad(format!(
                "method {shown:?} is unknown: use {}",
                explain::METHODS.join(" or ")
            )));
        };
        match (method, req.steps) {
            (Method::Occlusion, Some(_)) => {
                return Err(bad(
                    "steps is for integrated-gradients; occlusion takes no steps".into(),
                ))
            }
            (_, Some(s)) => {
                if let Some(p) = explain::steps_problem(s) {
                    return Err(bad(format!("steps {p}")));
                }
            }
            _ => {}
        }
        let (reply, rx) = oneshot::channel();
        let job = Job::Explain {
            text: req.text,
            method,
            reply,
        };
        match ask(&app, job, rx).await? {
            Ok(e) => Ok(json_response(
                StatusCode::OK,
                &serde_json::to_value(&e).expect("an explanation is plain data"),
            )),
            Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e)),
        }
    };
    r.await.unwrap_or_else(|e| e.into_response())
}
