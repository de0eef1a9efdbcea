//! Receivers that misbehave: never answer, garbage, connections closed mid
//! headers, 1xx/3xx/4xx/5xx, 429 with every Retry-After form, huge answer
//! bodies, slow answers, early answers, TLS that cannot be trusted.
