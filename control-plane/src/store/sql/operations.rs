//! Long-running operations.

use async_trait::async_trait;

use super::{ThisStore, changed, decode_all, found, on_unique};
use crate::store::codec::to_json;
use crate::store::operations::{OperationRow, operation_name};
use crate::store::rules::{check_id, check_operation_result};
use crate::store::{Operation, OperationStore, Result, StoreError, Timestamp};

#[async_trait]
impl OperationStore for ThisStore {
    async fn insert_operation(&self, operation: &Operation) -> Result<Operation> {
        check_id(&operation.operation_id, "an operation id")?;
        check_operation_result(operation)?;
        let row: OperationRow = sqlx::query_as(concat!(
            "INSERT INTO operations (project, location, operation_id, target, kind, metadata, done, error, \
             response, cancel_requested, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING ",
            operation_columns!()
        ))
        .bind(&operation.project)
        .bind(&operation.location)
        .bind(&operation.operation_id)
        .bind(&operation.target)
        .bind(operation.kind.as_str())
        .bind(to_json(&operation.metadata))
        .bind(operation.done)
        .bind(operation.error.as_ref().map(to_json))
        .bind(operation.response.as_ref().map(to_json))
        .bind(false)
        .bind(Timestamp::now().unix_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| on_unique(e, || StoreError::already_exists("operation", operation.name())))?;
        row.decode()
    }

    async fn get_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<Operation> {
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE project = $1 AND location = $2 AND operation_id = $3"
        ))
        .bind(project)
        .bind(location)
        .bind(operation_id)
        .fetch_optional(&self.pool)
        .await?;
        found(row, "operation", || operation_name(project, location, operation_id))?.decode()
    }

    async fn list_operations(&self, project: &str, location: &str) -> Result<Vec<Operation>> {
        let rows: Vec<OperationRow> = sqlx::query_as(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE project = $1 AND location = $2 ORDER BY create_time, operation_id"
        ))
        .bind(project)
        .bind(location)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, OperationRow::decode)
    }

    async fn list_unfinished_operations(&self) -> Result<Vec<Operation>> {
        let rows: Vec<OperationRow> = sqlx::query_as(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE done = $1 ORDER BY create_time, project, location, operation_id"
        ))
        .bind(false)
        .fetch_all(&self.pool)
        .await?;
        decode_all(rows, OperationRow::decode)
    }

    async fn update_operation(&self, operation: &Operation) -> Result<Operation> {
        check_operation_result(operation)?;
        let (project, location, id) = (&operation.project, &operation.location, &operation.operation_id);
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "UPDATE operations SET metadata = $4, done = $5, error = $6, response = $7, update_time = $8 \
             WHERE project = $1 AND location = $2 AND operation_id = $3 AND done = $9 RETURNING ",
            operation_columns!()
        ))
        .bind(project)
        .bind(location)
        .bind(id)
        .bind(to_json(&operation.metadata))
        .bind(operation.done)
        .bind(operation.error.as_ref().map(to_json))
        .bind(operation.response.as_ref().map(to_json))
        .bind(Timestamp::now().unix_micros())
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => row.decode(),
            None => {
                // Missing (NotFound from get_operation), or done already.
                self.get_operation(project, location, id).await?;
                Err(StoreError::Conflict(format!(
                    "{} is done already; its result cannot change",
                    operation.name()
                )))
            }
        }
    }

    async fn request_cancel_operation(
        &self,
        project: &str,
        location: &str,
        operation_id: &str,
    ) -> Result<Operation> {
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "UPDATE operations SET cancel_requested = $4, update_time = $5 \
             WHERE project = $1 AND location = $2 AND operation_id = $3 AND done = $6 RETURNING ",
            operation_columns!()
        ))
        .bind(project)
        .bind(location)
        .bind(operation_id)
        .bind(true)
        .bind(Timestamp::now().unix_micros())
        .bind(false)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => row.decode(),
            // Done already (nothing to cancel), or missing.
            None => self.get_operation(project, location, operation_id).await,
        }
    }

    async fn delete_operation(&self, project: &str, location: &str, operation_id: &str) -> Result<()> {
        let done =
            sqlx::query("DELETE FROM operations WHERE project = $1 AND location = $2 AND operation_id = $3")
                .bind(project)
                .bind(location)
                .bind(operation_id)
                .execute(&self.pool)
                .await?;
        changed(done.rows_affected(), "operation", || operation_name(project, location, operation_id))
    }
}
