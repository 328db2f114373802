// Package webui is the appliance's HTTP face: the REST API under /api/v1
// (documented in docs/openapi.yaml, served at /api/v1/openapi.yaml),
// server-rendered pages with htmx and uPlot, authentication, live updates
// over server-sent events and the embedded static assets. It works with no
// network beyond the LAN: every script and style is compiled in.
//
// It owns the HTTP shape only. It reads users, sessions, API tokens,
// endpoints, settings and the audit log through store (it never writes
// SQL), and declares small interfaces for what the rest of the appliance
// provides (Deps): Data (latest values, series, events, logs — StoreData
// implements it over store), Operations (the dispatcher), Provisioner (the
// PKI), Enrollment (Zephyr Kconfig, AT%CMNG, bundle), Events (the live feed
// — Broker implements it, and Broker.FollowStore feeds it from store's
// commits), System, SettingsStore (StoreSettings implements it) and
// Firmware. It translates errors to status codes at the edge and never
// speaks CoAP.
//
// Wiring, in the appliance:
//
//	broker := webui.NewBroker()
//	go broker.FollowStore(ctx, db)            // registrations and values
//	go logBroker.FollowLogs(ctx, db)          // device log lines (Deps.LogEvents)
//	srv, err := webui.New(cfg, webui.Deps{
//		Store: db, Data: webui.NewStoreData(db), Registry: reg,
//		Operations: dispatcher, Provisioner: pki, Enrollment: enroller,
//		Events: broker, System: sys, Settings: webui.NewStoreSettings(db, defaults),
//		Logger: log,
//	}, webui.WithVersion(version), webui.WithListener(activated))
//	go srv.Run(ctx)
//
// and broker.Publish(webui.LiveEvent{Kind: "operation", …}) on every
// operation state change.
//
// Security: argon2id password hashes (OWASP m=19 MiB, t=2, p=1); server-side
// sessions from store, new at every login, with idle (30 min) and absolute
// (12 h) timeouts; HttpOnly SameSite=Strict cookies, Secure under HTTPS; a
// CSRF token on every cookie-authenticated write; login rate limiting with
// a temporary lockout (429) per user name and per address; a
// Content-Security-Policy without inline script; roles checked on every
// route (viewer < operator < admin).
package webui
