// Package store owns the SQLite database: the schema and its numbered
// migrations, the persisted vocabulary (endpoints, resources, events,
// operations, firmware, users, sessions, credentials, logs, deployments,
// settings, audit), batched ingestion, retention, roll-ups and export.
//
// It is the only package that writes SQL. It may use lwm2m value types and
// nothing else from the project.
package store
