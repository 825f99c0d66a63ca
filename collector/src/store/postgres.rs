//! PostgreSQL, selected by a `postgres://` URL, for more than one collector or more data than a
//! single box holds. Statements are prepared once per connection and cached by their text.
//! The `?` placeholders of the shared SQL become `$1, $2, ...` here.

use super::backend::{Backend, Dialect, Result, Row, StoreError, Value};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;

pub struct Postgres {
    url: String,
    /// Always Some until dropped; see `Drop`.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl Drop for Postgres {
    /// The synchronous client blocks on its own runtime when it closes, which panics on a
    /// thread that drives async tasks (an HTTP handler's state dropped at shutdown). Such a
    /// thread hands the client to a plain thread to close.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(client));
            }
        }
    }
}

/// Any fixed number works; collectors sharing a database must agree on it.
const EVALUATION_LOCK: i64 = 0x6564_6765_7072;

fn err(e: postgres::Error) -> StoreError {
    StoreError::Postgres(e)
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Postgres> {
        let client = Client::connect(url, NoTls).map_err(err)?;
        Ok(Postgres { url: url.to_string(), client: Some(client), statements: HashMap::new() })
    }

    /// The connection, opened again if the server closed it (a restart, a failover): the
    /// statement that failed returned its error, and the caller's retry lands here.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.statements.clear();
            self.client = Some(Client::connect(&self.url, NoTls).map_err(err)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        // Reconnecting first empties the cache of statements the old connection prepared.
        self.client()?;
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client()?.prepare(&numbered(sql)).map_err(err)?;
        // Multi-row inserts come in many lengths; the cache stays bounded.
        if self.statements.len() >= 512 {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// Rewrites `?` placeholders as `$n`, leaving quoted text alone.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.as_ref().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT8 | Type::BOOL | Type::TEXT | Type::VARCHAR | Type::BYTEA
        )
    }

    to_sql_checked!();
}

fn row(r: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(r.len());
    for (i, column) in r.columns().iter().enumerate() {
        let v = match *column.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
            Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| Value::Int(v.into()))),
            Type::INT2 => r.try_get::<_, Option<i16>>(i).map(|v| v.map(|v| Value::Int(v.into()))),
            Type::BOOL => r.try_get::<_, Option<bool>>(i).map(|v| v.map(|v| Value::Int(v.into()))),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map(Value::Real)),
            Type::FLOAT4 => r.try_get::<_, Option<f32>>(i).map(|v| v.map(|v| Value::Real(v.into()))),
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map(|v| Value::Bytes(v.into()))),
            Type::TEXT | Type::VARCHAR | Type::NAME => r.try_get::<_, Option<String>>(i).map(|v| v.map(Value::Text)),
            ref other => {
                return Err(StoreError::UnsupportedColumn {
                    column: column.name().to_string(),
                    kind: other.to_string(),
                });
            }
        };
        values.push(v.map_err(err)?.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let statement = self.statement(sql)?;
        self.client()?.execute(&statement, &refs(params)).map_err(err)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.client()?.query(&statement, &refs(params)).map_err(err)?.iter().map(row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.statements.clear();
        self.client()?.batch_execute(sql).map_err(err)
    }

    fn begin(&mut self, exclusive: bool) -> Result<()> {
        self.client()?.batch_execute("BEGIN").map_err(err)?;
        if exclusive {
            // Held until COMMIT or ROLLBACK; a second collector waits here.
            self.client()?.execute("SELECT pg_advisory_xact_lock($1)", &[&EVALUATION_LOCK]).map_err(err)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.client()?.batch_execute("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> Result<()> {
        self.client()?.batch_execute("ROLLBACK").map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            super::numbered("SELECT '?' , ? FROM t WHERE a = ? AND b = '??'"),
            "SELECT '?' , $1 FROM t WHERE a = $2 AND b = '??'"
        );
    }
}
