//! The floor for `bench/`: an axum server that forwards every request's body to one upstream
//! over hyper's pooled client and returns the answer, with no gateway logic at all (no auth,
//! routing, limits, costing, headers or spend rows). What it costs is what any proxy built on
//! tokio, hyper and axum pays before doing anything; the gap between it and `idlehands proxy`
//! is the gateway's own work. `bare-forward [LISTEN] [UPSTREAM]`
//! (defaults 127.0.0.1:18083, http://127.0.0.1:18080).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Upstream = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Forward {
    client: Upstream,
    base: String,
}

async fn forward(State(f): State<Forward>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 24).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(uri) = format!("{}{}", f.base, parts.uri.path()).parse::<Uri>() else {
        return status(StatusCode::BAD_REQUEST);
    };
    let mut up = Request::new(Full::new(body));
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    if let Some(ct) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
        up.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct.clone());
    }
    match f.client.request(up).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            match body.collect().await {
                Ok(b) => Response::from_parts(parts, Body::from(b.to_bytes())),
                Err(_) => status(StatusCode::BAD_GATEWAY),
            }
        }
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

fn status(s: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = s;
    r
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18083".to_string());
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18080".to_string());
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(http);
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Forward { client, base });
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare-forward: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("bare-forward listening on {listen}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("bare-forward: {e}");
    }
}
