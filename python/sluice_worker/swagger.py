"""``/swagger.json`` as azmlinfsrv produces it (contract §2.3).

For each version (2, 3, 3.1) a user-supplied file in the app root wins (``swagger.json`` then
``swagger2.json`` for 2, ``swagger3.json`` for 3, ``swagger3.1.json`` for 3.1); otherwise the
document is generated from a template plus the ``ServiceInput``/``ServiceOutput`` schemas that the
inference-schema decorators registered (``{"type": "object", "example": {}}`` for an undecorated
``run``). A version the decorators do not support is left out.

Hook (Sluice only): when the scoring module defines ``sluice_swagger(version)`` (``version`` is
``"2"``, ``"3"`` or ``"3.1"``), it is called for each version that has no user file. It returns
``None`` (the default behaviour above), a complete document (a dict with a ``swagger`` or
``openapi`` key, used as is), or a dict with ``ServiceInput`` and/or ``ServiceOutput`` schemas that
replace the decorators' schemas in the template. The generated MLflow scorer
(``sluice_worker/mlflow_score.py``) uses it to describe the model signature. An exception from the
hook fails the boot (exit 3).
"""

import copy
import json
import os
import sys

ALL_SUPPORTED_VERSIONS = ["2.0", "3.0", "3.1"]
UNDECORATED_SCHEMA = {"type": "object", "example": {}}

_ERROR_RESPONSE = {"type": "object", "properties": {"message": {"type": "string"}}}
_PLACEHOLDER_INPUT = {
    "type": "object",
    "properties": {"param": {"type": "object", "additionalProperties": {"type": "object"}}},
}
_PLACEHOLDER_OUTPUT = {"type": "object", "additionalProperties": {"type": "object"}}
_BEARER = {
    "type": "apiKey",
    "name": "Authorization",
    "in": "header",
    "description": "For example: Bearer abc123",
}
_HEALTH_DESC = "Simple health check endpoint to ensure the service is up at any given point."
_HEALTH_OK = "If service is up and running, this response will be returned with the content 'Healthy'"
_SCORE_DESC = "Run web service's model and get the prediction output"
_SCORE_INPUT = "The input payload for executing the real-time machine learning service."
_SCORE_OK = "The service processed the input correctly and provided a result prediction, if applicable."
_FAILED = "The service failed to execute due to an error."


def _v2_template(title, version, prefix):
    err = {"description": _FAILED, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": {
            "title": title,
            "description": f"API specification for the Azure Machine Learning service {title}",
            "version": version,
        },
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"Bearer": dict(_BEARER)},
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESC,
                    "responses": {
                        "200": {
                            "description": _HEALTH_OK,
                            "schema": {"type": "string"},
                            "examples": {"application/json": "Healthy"},
                        },
                        "default": copy.deepcopy(err),
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESC,
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": _SCORE_INPUT,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {"description": _SCORE_OK, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                        "default": copy.deepcopy(err),
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {"name": "version", "in": "query", "required": False, "type": "integer", "enum": [2, 3]}
                    ],
                    "responses": {
                        "200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                        "default": copy.deepcopy(err),
                    },
                }
            },
        },
        "definitions": {
            "ServiceInput": copy.deepcopy(_PLACEHOLDER_INPUT),
            "ServiceOutput": copy.deepcopy(_PLACEHOLDER_OUTPUT),
            "ErrorResponse": copy.deepcopy(_ERROR_RESPONSE),
        },
    }


def _v3_template(title, version, prefix):
    def err():
        return {
            "description": _FAILED,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "description": f"API specification for the Azure Machine Learning service {title}",
            "version": version,
        },
        "security": [{"Bearer": []}],
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESC,
                    "responses": {
                        "200": {
                            "description": _HEALTH_OK,
                            "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": err(),
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESC,
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": _SCORE_INPUT,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}},
                    },
                    "responses": {
                        "200": {
                            "description": _SCORE_OK,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}
                            },
                        },
                        "default": err(),
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [2, 3]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": err(),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ServiceInput": copy.deepcopy(_PLACEHOLDER_INPUT),
                "ServiceOutput": copy.deepcopy(_PLACEHOLDER_OUTPUT),
                "ErrorResponse": copy.deepcopy(_ERROR_RESPONSE),
            },
            "securitySchemes": {"Bearer": dict(_BEARER)},
        },
    }


class SwaggerError(Exception):
    """Becomes a 404 ``{"message": ...}``."""


# version -> (aliases, user files in order, template, where the schemas go)
_BUILDERS = [
    ("2", ("2", "2.0"), ("swagger.json", "swagger2.json")),
    ("3", ("3", "3.0"), ("swagger3.json",)),
    ("3.1", ("3.1",), ("swagger3.1.json",)),
]
VALID_VERSIONS = frozenset(alias for _, aliases, _ in _BUILDERS for alias in aliases)


def _schema_util():
    """inference_schema's registry, only if the scoring script imported it."""
    return sys.modules.get("inference_schema.schema_util")


def is_schema_decorated(run):
    util = _schema_util()
    return bool(util is not None and util.is_schema_decorated(run))


def _read_user_file(app_root, name):
    path = os.path.join(app_root, name)
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    print(f"sluice_worker: loaded user swagger file {path}", file=sys.stderr, flush=True)
    return data


def _filled(version, title, service_version, prefix, input_schema, output_schema):
    """The azmlinfsrv template for ``version`` with the two service schemas."""
    if version == "2":
        doc = _v2_template(title, service_version, prefix)
        doc["definitions"]["ServiceInput"] = copy.deepcopy(input_schema)
        doc["definitions"]["ServiceOutput"] = copy.deepcopy(output_schema)
    else:
        doc = _v3_template(title, service_version, prefix)
        doc["components"]["schemas"]["ServiceInput"] = copy.deepcopy(input_schema)
        doc["components"]["schemas"]["ServiceOutput"] = copy.deepcopy(output_schema)
        if version == "3.1":
            doc["openapi"] = "3.1.0"
    return doc


def _from_hook(hook, version, title, service_version, prefix, input_schema, output_schema):
    """The document the script's ``sluice_swagger(version)`` asks for, or None."""
    result = hook(version)
    if result is None:
        return None
    if not isinstance(result, dict):
        raise TypeError(f"sluice_swagger({version!r}) returned {type(result).__name__}, not a dict or None")
    if "swagger" in result or "openapi" in result:
        return copy.deepcopy(result)
    return _filled(
        version,
        title,
        service_version,
        prefix,
        result.get("ServiceInput", input_schema),
        result.get("ServiceOutput", output_schema),
    )


class Swagger:
    """Built once at boot; answers ``get(version)`` with the encoded document."""

    def __init__(self, app_root, run, environ=os.environ, module=None):
        util = _schema_util()
        decorated = is_schema_decorated(run)
        versions = util.get_supported_versions(run) if util is not None else list(ALL_SUPPORTED_VERSIONS)
        if decorated:
            input_schema = util.get_input_schema(run)
            output_schema = util.get_output_schema(run)
        else:
            input_schema = output_schema = UNDECORATED_SCHEMA
        hook = getattr(module, "sluice_swagger", None) if module is not None else None
        if not callable(hook):
            hook = None
        title = environ.get("SERVICE_NAME", "ML service")
        service_version = environ.get("SERVICE_VERSION", "1.0")
        prefix = environ.get("SERVICE_PATH_PREFIX", "")
        prefix = f"/{prefix.strip('/')}" if prefix else ""

        self.supported = []
        self._docs = {}  # alias -> dict
        for version, aliases, files in _BUILDERS:
            doc = None
            for name in files:
                doc = _read_user_file(app_root, name)
                if doc:
                    break
            if not doc and hook is not None:
                doc = _from_hook(hook, version, title, service_version, prefix, input_schema, output_schema)
            if not doc:
                if not any(alias in versions for alias in aliases):
                    continue
                doc = _filled(version, title, service_version, prefix, input_schema, output_schema)
            for alias in aliases:
                self._docs[alias] = doc
            self.supported.append(version)
        self.supported.sort()
        self._encoded = {}

    def get(self, version):
        """The JSON body for ``?version=``; raises SwaggerError (404) or TypeError/ValueError
        (500: a schema that does not serialize)."""
        if version not in VALID_VERSIONS:
            raise SwaggerError(
                f"Swagger version [{version}] is not valid. Supported versions: [{', '.join(self.supported)}]."
            )
        body = self._encoded.get(version)
        if body is None:
            doc = self._docs.get(version)
            if not doc:
                raise SwaggerError(
                    f"Swagger version [{version}] is not supported for the scoring script. "
                    f"Supported swagger versions: [{', '.join(self.supported)}]."
                )
            body = json.dumps(doc).encode("utf-8")
            self._encoded[version] = body
        return body
