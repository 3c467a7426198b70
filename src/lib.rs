pub mod actors;
pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod metrics;
pub mod startup;
