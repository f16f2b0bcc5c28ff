// Starts Swagger UI on the API's OpenAPI document, beside the page. A file of its own, not an
// inline script, so that the pages' Content-Security-Policy allows scripts from the API only.
// No validator: Swagger UI would otherwise send the document to validator.swagger.io.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
});
