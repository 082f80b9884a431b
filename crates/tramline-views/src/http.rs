//! A declared view's query API: `GET <path>/{key}` (one row) and `GET <path>?<column>=…&after=…&limit=…`
//! (rows matching every filter, a keyset page at a time, in key order), with an OpenAPI
//! document generated from the declaration. Values are typed as declared: text, integers and
//! booleans as JSON strings, numbers and booleans; decimals as strings with exactly the
//! declared scale (`"12.50"`: exact, unlike a JSON number); timestamps as RFC 3339 strings in
//! UTC; JSON columns as the JSON they hold. Errors are problem details.

use crate::problem::Problem;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tramline_core::readmodel::ColumnType;
use tramline_sql::readmodel::{type_name, ReadModelTable, Row};
use tramline_sql::{Db, SqlError};

/// Most rows one page returns.
pub const MAX_LIMIT: u32 = 1000;
/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// What the query API reads: the table, through its own pool.
#[derive(Debug, Clone)]
pub struct ViewQuery {
    db: Db,
    table: Arc<ReadModelTable>,
    path: String,
}

impl ViewQuery {
    /// Queries of `table` in `db`, served under `path` (`/order-status`).
    pub fn new(db: Db, table: Arc<ReadModelTable>, path: impl Into<String>) -> Self {
        ViewQuery {
            db,
            table,
            path: path.into(),
        }
    }

    /// The database it reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// One row as the API shows it (`GET <path>/{key}`); `None` if the view has none.
    pub async fn row(&self, key: &str) -> Result<Option<Value>, SqlError> {
        // No stored key holds NUL (PostgreSQL cannot store it, and every store refuses it).
        if key.contains('\0') {
            return Ok(None);
        }
        Ok(self.table.get(&self.db, key).await?.map(|r| self.json(r)))
    }

    /// The row as a JSON object, each value typed as its column.
    fn json(&self, row: Row) -> Value {
        let mut object = Map::new();
        for (column, ty) in self.table.columns() {
            let value = row.get(column).cloned().flatten();
            object.insert(column.to_owned(), typed(ty, value));
        }
        Value::Object(object)
    }
}

/// A canonical text value as JSON of its column's type.
fn typed(ty: ColumnType, value: Option<String>) -> Value {
    let Some(value) = value else {
        return Value::Null;
    };
    match ty {
        ColumnType::Integer => value
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(value)),
        ColumnType::Boolean => Value::Bool(value == "true"),
        ColumnType::Json => serde_json::from_str(&value).unwrap_or(Value::String(value)),
        _ => Value::String(value),
    }
}

/// The problem a failed read answers with: 503 while the database is busy or away, else 500
/// (the cause goes to the log, not to the client).
fn store_problem(e: SqlError) -> Problem {
    if e.is_transient() {
        tracing::warn!(error = %tramline_core::error::sentence(&e), "view database busy while serving a request");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the view's database is busy; retry the request",
        )
    } else {
        tracing::error!(error = %tramline_core::error::sentence(&e), "view request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed",
        )
    }
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "malformed", detail)
}

async fn get_row(
    State(view): State<ViewQuery>,
    Path(key): Path<String>,
) -> Result<Json<Value>, Problem> {
    let not_found = || {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("the view has no row for {key:?} (yet)"),
        )
    };
    match view.row(&key).await {
        Ok(Some(row)) => Ok(Json(row)),
        Ok(None) => Err(not_found()),
        Err(e) => Err(store_problem(e)),
    }
}

async fn list_rows(
    State(view): State<ViewQuery>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(params) = params.map_err(|e| malformed(e.body_text()))?;
    let mut after = String::new();
    let mut limit = DEFAULT_LIMIT;
    let mut filters = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, value) in &params {
        if !seen.insert(name.as_str()) {
            return Err(malformed(format!("parameter {name:?} is given twice")));
        }
        match name.as_str() {
            "after" => after = value.clone(),
            "limit" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| malformed(format!("limit: {value:?} is not a whole number")))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-value",
                        format!("limit: must be between 1 and {MAX_LIMIT}, got {n}"),
                    ));
                }
                limit = n;
            }
            column => filters.push(
                view.table
                    .filter(column, value)
                    .map_err(|e| malformed(e.to_string()))?,
            ),
        }
    }
    if after.contains('\0') {
        return Err(malformed("after: a key holds no NUL"));
    }
    let rows = view
        .table
        .page(&view.db, &filters, &after, limit)
        .await
        .map_err(store_problem)?;
    let key = &view.table.declaration().key.name;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().and_then(|r| r.get(key).cloned().flatten()))
        .flatten();
    let items: Vec<Value> = rows.into_iter().map(|r| view.json(r)).collect();
    let mut page = json!({ "items": items });
    if let Some(next) = next {
        page["next"] = Value::String(next);
    }
    Ok(Json(page))
}

/// The view's routes: `GET <path>` and `GET <path>/{key}`.
pub fn router(view: ViewQuery) -> Router {
    let path = view.path.clone();
    Router::new()
        .route(&path, get(list_rows))
        .route(&format!("{path}/{{key}}"), get(get_row))
        .with_state(view)
}

/// The JSON schema of a column's values.
fn schema(ty: ColumnType, nullable: bool) -> Value {
    let of = |t: &str| {
        if nullable {
            json!([t, "null"])
        } else {
            json!(t)
        }
    };
    match ty {
        ColumnType::Integer => json!({ "type": of("integer"), "format": "int64" }),
        ColumnType::Decimal { scale, .. } => {
            let pattern = if scale == 0 {
                "^-?[0-9]+$".to_owned()
            } else {
                format!("^-?[0-9]+\\.[0-9]{{{scale}}}$")
            };
            json!({ "type": of("string"), "format": "decimal", "pattern": pattern })
        }
        ColumnType::Boolean => json!({ "type": of("boolean") }),
        ColumnType::Timestamp => json!({ "type": of("string"), "format": "date-time" }),
        ColumnType::Json => json!({ "description": "any JSON value" }),
        _ => json!({ "type": of("string") }),
    }
}

/// The OpenAPI document of view `name` served under `path`, generated from its declaration.
pub fn openapi(name: &str, path: &str, table: &ReadModelTable) -> utoipa::openapi::OpenApi {
    let declaration = table.declaration();
    let key = &declaration.key.name;
    let row = format!("{}Row", schema_name(name));
    let page = format!("{}Page", schema_name(name));
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut parameters = Vec::new();
    for (column, ty) in table.columns() {
        properties.insert(column.to_owned(), schema(ty, column != key));
        required.push(json!(column));
        if column != key && !matches!(ty, ColumnType::Json | ColumnType::Timestamp) {
            parameters.push(json!({
                "name": column, "in": "query", "required": false,
                "description": format!("only rows whose {column} ({}) equals this", type_name(ty)),
                "schema": schema(ty, false),
            }));
        }
    }
    parameters.push(json!({
        "name": "after", "in": "query", "required": false,
        "description": "the `next` cursor of the previous page; the first page without it",
        "schema": { "type": "string" },
    }));
    parameters.push(json!({
        "name": "limit", "in": "query", "required": false,
        "description": format!("rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
        "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT },
    }));
    let problem = |description: &str| {
        json!({ "description": description,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } })
    };
    let ok = |description: &str, schema: &str| {
        json!({ "description": description,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
    };
    let busy = "the view's database is busy or away";
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("tramline view {name}"),
            "description": format!("The declared read model {name} (table {}), one row per {key}.", declaration.table),
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": {
            path: { "get": {
                "tags": [name], "operationId": format!("list_{name}"),
                "summary": "Rows matching the filters, a page at a time, in key order",
                "parameters": parameters,
                "responses": {
                    "200": ok("one page", &page),
                    "400": problem("an unknown parameter, or a value not of its column's type"),
                    "422": problem("a limit out of range"),
                    "503": problem(busy),
                },
            }},
            format!("{path}/{{{key}}}"): { "get": {
                "tags": [name], "operationId": format!("get_{name}"),
                "summary": "One row",
                "parameters": [{ "name": key, "in": "path", "required": true,
                    "description": format!("the {key}"), "schema": { "type": "string" } }],
                "responses": {
                    "200": ok("the row", &row),
                    "404": problem("the view has no row for this key (yet)"),
                    "503": problem(busy),
                },
            }},
        },
        "components": { "schemas": {
            row.clone(): { "type": "object", "properties": properties, "required": required,
                "additionalProperties": false },
            page: { "type": "object", "required": ["items"], "properties": {
                "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{row}") } },
                "next": { "type": "string", "description": "pass as `after` for the next page; absent on the last page" },
            }},
        }},
    });
    let mut api: utoipa::openapi::OpenApi =
        serde_json::from_value(document).expect("the generated document is an OpenAPI document");
    let problem_schema = <Problem as utoipa::PartialSchema>::schema();
    api.components
        .get_or_insert_with(Default::default)
        .schemas
        .insert("Problem".into(), problem_schema);
    api
}

/// `order_status` → `OrderStatus`.
fn schema_name(name: &str) -> String {
    name.split(['_', '-'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}
