//! The rate limiter's one contract, against both implementations: `limit` hits per window
//! pass, the next is limited with the time left, keys are independent, and a new window
//! starts afresh.

use std::time::Duration;

use codex32_shared::limit::memory::MemoryLimiter;
use codex32_shared::limit::redis::RedisLimiter;
use codex32_shared::limit::{Decision, Limiter};
use codex32_shared::testing::TestRedis;

async fn contract(l: &dyn Limiter) {
    let window = Duration::from_millis(600);
    for _ in 0..3 {
        assert_eq!(l.hit("a", 3, window).await.unwrap(), Decision::Allowed);
    }
    match l.hit("a", 3, window).await.unwrap() {
        Decision::Limited { retry_after } => assert!(retry_after <= window, "{retry_after:?}"),
        Decision::Allowed => panic!("the 4th hit in the window passed"),
    }
    assert_eq!(
        l.hit("b", 3, window).await.unwrap(),
        Decision::Allowed,
        "another key"
    );
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    assert_eq!(
        l.hit("a", 3, window).await.unwrap(),
        Decision::Allowed,
        "a new window"
    );
}

#[tokio::test]
async fn the_memory_limiter_keeps_the_contract() {
    contract(&MemoryLimiter::default()).await;
}

#[tokio::test]
async fn the_redis_limiter_keeps_the_contract() {
    let redis = TestRedis::start();
    let limiter = RedisLimiter::connect(&redis.url, "t").await.unwrap();
    contract(&limiter).await;
}
