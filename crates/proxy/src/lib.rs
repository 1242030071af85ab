//! The LiteLLM-compatible gateway, as a library. A request flows
//! http -> auth -> limits -> router -> providers -> pricing -> store.
