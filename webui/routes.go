package webui

import (
	"net/http"

	"github.com/labstack/echo/v5"
)

// routes wires every URL. Each route states the least role it needs; the
// global middleware authenticates and checks CSRF for cookie writes.
func (s *Server) routes() *echo.Echo {
	e := echo.NewWithConfig(echo.Config{
		Logger:           s.log,
		HTTPErrorHandler: s.handleError,
		Router:           echo.NewRouter(echo.RouterConfig{UnescapePathParamValues: true}),
	})
	e.Pre(s.recoverPanics, securityHeaders, s.countRequests)
	e.Use(s.authenticate, s.csrfProtect)

	viewer, operator, admin := s.requireRole(RoleViewer), s.requireRole(RoleOperator), s.requireRole(RoleAdmin)
	small, upload := bodyLimit(s.cfg.MaxBody), bodyLimit(s.cfg.MaxUpload)

	e.GET("/healthz", s.healthz)
	e.GET("/metrics", s.metricsHandler)
	e.GET("/static/*", s.static)

	api := e.Group("/api/v1")
	api.GET("/openapi.yaml", s.openapi)
	api.POST("/auth/login", s.apiLogin, small)
	api.POST("/auth/logout", s.apiLogout, viewer)
	api.GET("/auth/me", s.apiMe, viewer)
	api.POST("/setup", s.apiSetup, small)

	api.GET("/devices", s.apiListDevices, viewer)
	api.POST("/devices", s.apiProvision, operator, small)
	api.GET("/devices/:ep", s.apiGetDevice, viewer)
	api.DELETE("/devices/:ep", s.apiDeleteDevice, admin)
	api.POST("/devices/:ep/accept", s.apiAcceptDevice, admin)
	api.POST("/devices/:ep/revoke", s.apiRevokeDevice, admin)
	api.POST("/pki/ca", s.apiImportCA, admin, small)
	api.POST("/devices/:ep/operations", s.apiQueueOperation, operator, small)
	api.GET("/devices/:ep/operations", s.apiListOperations, viewer)
	api.GET("/devices/:ep/telemetry", s.apiTelemetry, viewer)
	api.GET("/devices/:ep/telemetry.csv", s.apiTelemetryCSV, viewer)
	api.GET("/devices/:ep/events", s.apiDeviceEvents, viewer)
	api.GET("/operations/:id", s.apiGetOperation, viewer)
	api.GET("/events", s.apiRecentEvents, viewer)
	api.GET("/events/stream", s.apiEventStream, viewer)

	api.POST("/enrollments", s.apiEnroll, operator, small)
	api.GET("/enrollments/:id/bundle.zip", s.apiEnrollBundle, operator)

	api.POST("/firmware", s.apiFirmwareUpload, operator, upload)
	api.GET("/firmware", s.apiFirmwareList, viewer)
	api.DELETE("/firmware/:id", s.apiFirmwareDelete, operator)
	api.POST("/firmware/:id/deployments", s.apiDeploy, operator, small)
	api.GET("/deployments", s.apiDeployments, viewer)
	api.GET("/deployments/:id", s.apiDeployment, viewer)
	api.POST("/deployments/:id/cancel", s.apiDeploymentCancel, operator, small)
	api.POST("/deployments/:id/retry", s.apiDeploymentRetry, operator, small)
	api.GET("/devices/:ep/firmware", s.apiDeviceFirmware, viewer)
	// Devices download images here with the token of their Package URI.
	e.GET("/fw/*", s.firmwareDownload)
	e.HEAD("/fw/*", s.firmwareDownload)

	api.GET("/users", s.apiListUsers, admin)
	api.POST("/users", s.apiCreateUser, admin, small)
	api.PATCH("/users/:name", s.apiUpdateUser, admin, small)
	api.DELETE("/users/:name", s.apiDeleteUser, admin)
	api.POST("/users/:name/unlock", s.apiUnlockUser, admin)
	api.GET("/tokens", s.apiListTokens, admin)
	api.POST("/tokens", s.apiCreateToken, admin, small)
	api.DELETE("/tokens/:id", s.apiRevokeToken, admin)
	api.GET("/audit", s.apiAudit, admin)

	api.GET("/settings", s.apiGetSettings, viewer)
	api.PUT("/settings", s.apiPutSettings, admin, small)

	api.GET("/system", s.apiSystem, viewer)
	api.GET("/system/ca.pem", s.apiCACert, viewer)
	api.GET("/system/backup", s.apiBackup, admin)
	api.POST("/system/restore", s.apiRestore, admin, upload)
	api.POST("/system/update", s.apiSelfUpdate, admin, upload)
	api.POST("/system/restart", s.apiRestart, admin, small)

	// Pages.
	e.GET("/setup", s.pageSetup)
	e.POST("/setup", s.pageSetupPost, small)
	e.GET("/login", s.pageLogin)
	e.POST("/login", s.pageLoginPost, small)
	e.POST("/logout", s.pageLogout, viewer, small)
	e.GET("/", s.pageDashboard, viewer)
	e.GET("/devices", s.pageDevices, viewer)
	e.GET("/ui/devices/rows", s.partialDeviceRows, viewer)
	e.GET("/devices/:ep", s.pageDevice, viewer)
	e.POST("/devices/:ep/accept", s.pageAcceptDevice, admin, small)
	e.POST("/devices/:ep/delete", s.pageDeleteDevice, admin, small)
	e.POST("/devices/:ep/revoke", s.pageRevokeDevice, admin, small)
	e.GET("/ui/devices/:ep/objects", s.partialObjects, viewer)
	e.GET("/ui/devices/:ep/operations", s.partialOperations, viewer)
	e.GET("/ui/devices/:ep/events", s.partialEvents, viewer)
	e.POST("/ui/devices/:ep/op", s.partialOperate, operator, small)
	e.GET("/ui/dashboard", s.partialDashboard, viewer)
	e.GET("/enroll", s.pageEnroll, operator)
	e.POST("/enroll", s.pageEnrollPost, operator, small)
	e.GET("/enroll/:id", s.pageEnrolled, operator)
	e.GET("/firmware", s.pageFirmware, viewer)
	e.POST("/firmware/upload", s.pageFirmwareUpload, operator, upload)
	e.POST("/firmware/:id/delete", s.pageFirmwareDelete, operator, small)
	e.POST("/firmware/:id/deploy", s.pageDeploy, operator, small)
	e.POST("/deployments/:id/:action", s.pageDeploymentAction, operator, small)
	e.GET("/ui/firmware/deployments", s.partialDeployments, viewer)
	e.GET("/ui/devices/:ep/firmware", s.partialDeviceFirmware, viewer)
	e.GET("/users", s.pageUsers, admin)
	e.POST("/users", s.pageUsersCreate, admin, small)
	e.POST("/users/:name", s.pageUsersUpdate, admin, small)
	e.POST("/tokens", s.pageTokenCreate, admin, small)
	e.POST("/tokens/:id/revoke", s.pageTokenRevoke, admin, small)
	e.GET("/settings", s.pageSettings, viewer)
	e.POST("/settings", s.pageSettingsPost, admin, small)
	e.GET("/system", s.pageSystem, viewer)
	e.POST("/system/restore", s.pageRestore, admin, upload)
	e.POST("/system/update", s.pageSelfUpdate, admin, upload)
	e.POST("/system/restart", s.pageRestart, admin, small)

	s.logRoutes(e, api, viewer, operator, small)

	e.RouteNotFound("/*", func(c *echo.Context) error { return errorf(http.StatusNotFound, "no such page or route") })
	return e
}

// bodyLimit caps the request body; reading past it fails with
// http.MaxBytesError, which handleError turns into 413.
func bodyLimit(n int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			r := c.Request()
			if r.ContentLength > n {
				return errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", n)
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, n)
			return next(c)
		}
	}
}
