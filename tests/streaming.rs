//! Bodies stream: a 256 MiB upload and a 256 MiB download pass through the
//! gateway intact while its resident memory stays far below the body size.

mod common;

use std::time::Duration;

use actix_web::web::Bytes;
use common::*;

const BODY: u64 = 256 * 1024 * 1024;
const CHUNK: u64 = 256 * 1024;
/// Far below the body size; the gateway idles around 10 MiB.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn expected_hash() -> u64 {
    let mut hash = FNV_START;
    let mut offset = 0;
    while offset < BODY {
        let len = CHUNK.min(BODY - offset);
        hash = fnv1a(hash, &pattern_chunk(offset, len as usize));
        offset += len;
    }
    hash
}

#[actix_rt::test]
async fn a_256_mib_upload_streams_through_with_flat_memory() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env(
            "CORTEX_GATEWAY__SERVER__MAX_REQUEST_BODY_SIZE",
            &(2 * BODY).to_string(),
        )
        .start();
    let stream =
        futures_util::stream::iter((0..BODY / CHUNK).map(|i| {
            Ok::<_, std::io::Error>(Bytes::from(pattern_chunk(i * CHUNK, CHUNK as usize)))
        }));
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("bulk"))
        .timeout(Duration::from_secs(600))
        .send_body(actix_web::body::SizedStream::new(BODY, stream))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let recorded = upstream.last();
    assert_eq!(recorded.body_len, BODY);
    assert_eq!(
        recorded.body_hash,
        expected_hash(),
        "bytes arrived intact and in order"
    );
    assert_eq!(
        recorded.header("content-length"),
        Some(BODY.to_string().as_str())
    );
    let peak = gateway.peak_rss_kib();
    eprintln!("gateway peak RSS: {peak} KiB for {BODY} bytes");
    assert!(
        peak < RSS_LIMIT_KIB,
        "gateway peak RSS {peak} KiB for a {BODY}-byte upload"
    );
}

#[actix_rt::test]
async fn a_256_mib_download_streams_back_with_flat_memory() {
    use futures_util::StreamExt;
    let upstream = Upstream::start("q");
    upstream.set_reply(Reply {
        generated_len: BODY,
        ..Reply::default()
    });
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let mut response = client()
        .get(gateway.url("/api/v1/query"))
        .bearer_auth(tenant_token("bulk"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0u64;
    let mut hash = FNV_START;
    while let Some(chunk) = response.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len() as u64;
        hash = fnv1a(hash, &chunk);
    }
    assert_eq!(received, BODY);
    assert_eq!(hash, expected_hash());
    let peak = gateway.peak_rss_kib();
    eprintln!("gateway peak RSS: {peak} KiB for {BODY} bytes");
    assert!(
        peak < RSS_LIMIT_KIB,
        "gateway peak RSS {peak} KiB for a {BODY}-byte download"
    );
}
