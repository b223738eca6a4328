// The API documentation: Swagger UI over our OpenAPI description, served by the binary.
window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger" });
