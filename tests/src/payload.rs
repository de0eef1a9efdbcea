//! Payloads the benchmarks share: event data that compresses as real event
//! data does, so gzip's figures are not those of repeated text.

/// An event line that compresses about as well as real event data (about
/// 3:1 at gzip 6), not 10:1 like repeated text: random
/// identifiers, amounts and timestamps, and a few words from a small set.
pub fn varied_json(i: u64, rng: &mut fastrand::Rng) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "order",
        "created",
        "paid",
        "shipped",
        "refund",
        "cart",
        "user",
        "item",
        "price",
        "stock",
        "warehouse",
        "berlin",
        "lisbon",
        "express",
        "standard",
        "gift",
    ];
    let words: Vec<&str> = (0..8).map(|_| WORDS[rng.usize(..WORDS.len())]).collect();
    format!(
        "{{\"seq\":{i},\"ts\":{},\"id\":\"{:016x}{:016x}\",\"user\":{},\"amount\":{}.{:02},\"note\":\"{}\"}}\n",
        1_790_000_000_000u64 + rng.u64(..1_000_000_000),
        rng.u64(..),
        rng.u64(..),
        rng.u32(..10_000_000),
        rng.u32(..100_000),
        rng.u32(..100),
        words.join(" "),
    )
    .into_bytes()
}
