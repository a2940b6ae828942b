//! weir-client: the async client SDK (Client, Admin, Producer, Consumer,
//! GroupConsumer) and the `weirctl` tool. It speaks weir-net's protocol to
//! one or more brokers; the SDK lands with the single-node broker issue.
