// Starts Swagger UI on /api/v1/docs from our own static files. The page passes its
// settings (the OpenAPI URL among them) and the CSRF token in data attributes,
// because the Content-Security-Policy allows no inline script.
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  const config = JSON.parse(root.dataset.settings);
  const csrfToken = root.dataset.csrfToken;
  config.dom_id = "#swagger-ui";
  config.presets = [SwaggerUIBundle.presets.apis];
  // "Try it out" with the session cookie needs the CSRF token on unsafe methods,
  // as every form on the site sends it.
  if (csrfToken) {
    config.requestInterceptor = (request) => {
      request.headers["X-CSRFToken"] = csrfToken;
      return request;
    };
  }
  SwaggerUIBundle(config);
});
