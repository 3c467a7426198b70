pub mod actors;
pub mod api;
pub mod config;
pub mod db;
pub mod domain;
mod error_chain;
pub mod metrics;
pub mod startup;
pub mod traces;
