use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::ApiError;
use super::ApiState;
use super::input::{self, Errors, JsonBody};
use super::path::{PathId, PathIds};
use crate::domain::group::{Group, MAX_MEMBER_CHANGES};
use crate::domain::{GroupId, UserId};
use crate::jobs::Chore;

/// A group as the API shows it.
#[derive(Serialize)]
struct GroupView<'a> {
    group_id: &'a GroupId,
    name: &'a str,
    member_count: u64,
}

impl<'a> From<&'a Group> for GroupView<'a> {
    fn from(g: &'a Group) -> Self {
        Self {
            group_id: &g.id,
            name: &g.name,
            member_count: g.member_count,
        }
    }
}

/// What `POST /members` changed.
#[derive(Serialize)]
struct MemberChanges {
    added: u64,
    removed: u64,
    member_count: u64,
}

/// A page of a list, as every list route answers.
#[derive(Serialize)]
pub struct PageView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageView<T> {
    /// A store's page, each item as `view` shows it.
    pub fn of<'a, U>(page: &'a crate::ports::Page<U>, view: impl FnMut(&'a U) -> T) -> Self {
        Self {
            items: page.items.iter().map(view).collect(),
            next_cursor: page.next_cursor.clone(),
        }
    }
}

async fn existing(state: &ApiState, id: &GroupId) -> Result<Group, ApiError> {
    state
        .app
        .store
        .get_group(id)
        .await?
        .ok_or(ApiError::not_found("group"))
}

pub async fn put(
    State(state): State<ApiState>,
    PathId(id): PathId<GroupId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let name = input::name_only(&body, 200, &mut errors);
    errors.finish()?;
    let group = state
        .app
        .store
        .put_group(&id, name.as_deref().unwrap_or_default())
        .await?;
    Ok(Json(GroupView::from(&group)).into_response())
}

pub async fn get(
    State(state): State<ApiState>,
    PathId(id): PathId<GroupId>,
) -> Result<Response, ApiError> {
    let group = existing(&state, &id).await?;
    Ok(Json(GroupView::from(&group)).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    PathId(id): PathId<GroupId>,
) -> Result<Response, ApiError> {
    if !state.app.store.delete_group(&id).await? {
        return Err(ApiError::not_found("group"));
    }
    // Its memberships go in the background; a DELETE again (after a 503) asks again.
    state
        .app
        .queues
        .send_chore(&Chore::PurgeGroup { group_id: id })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Subscribes one user; subscribing twice is fine.
pub async fn subscribe(
    State(state): State<ApiState>,
    PathIds(group, user): PathIds<GroupId, UserId>,
) -> Result<Response, ApiError> {
    existing(&state, &group).await?;
    if state.app.store.get_user(&user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    state.app.store.add_members(&group, &[user]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Unsubscribes one user; unsubscribing someone who is not a member is fine.
pub async fn unsubscribe(
    State(state): State<ApiState>,
    PathIds(group, user): PathIds<GroupId, UserId>,
) -> Result<Response, ApiError> {
    existing(&state, &group).await?;
    state.app.store.remove_members(&group, &[user]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn id_list(map: &serde_json::Map<String, Value>, key: &str, errors: &mut Errors) -> Vec<UserId> {
    match map.get(key) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v.as_str().map(UserId::parse) {
                Some(Ok(id)) => Some(id),
                Some(Err(e)) => {
                    errors.add(format!("{key}[{i}]"), e.0);
                    None
                }
                None => {
                    errors.add(format!("{key}[{i}]"), "must be a user id string");
                    None
                }
            })
            .collect(),
        Some(_) => {
            errors.add(key, "must be an array of user ids");
            vec![]
        }
    }
}

/// `{"add": [...], "remove": [...]}`, at most 1000 ids in all; every unknown user in `add` is named.
pub async fn change(
    State(state): State<ApiState>,
    PathId(group): PathId<GroupId>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let (add, remove) = match input::object(&body, "", &["add", "remove"], &mut errors) {
        Some(map) => (
            id_list(map, "add", &mut errors),
            id_list(map, "remove", &mut errors),
        ),
        None => (vec![], vec![]),
    };
    let total = body
        .get("add")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        + body
            .get("remove")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
    if total > MAX_MEMBER_CHANGES {
        errors.add(
            "body",
            format!("at most {MAX_MEMBER_CHANGES} ids in add and remove together, not {total}"),
        );
    }
    errors.finish()?;
    existing(&state, &group).await?;
    if !add.is_empty() {
        let found: std::collections::HashSet<UserId> = state
            .app
            .store
            .get_users(&add)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        let mut unknown = Errors::default();
        for (i, id) in add.iter().enumerate() {
            if !found.contains(id) {
                unknown.add(format!("add[{i}]"), format!("no user with id {id:?}"));
            }
        }
        unknown.finish()?;
    }
    let added = state.app.store.add_members(&group, &add).await?;
    let removed = state.app.store.remove_members(&group, &remove).await?;
    let member_count = existing(&state, &group).await?.member_count;
    Ok(Json(MemberChanges {
        added,
        removed,
        member_count,
    })
    .into_response())
}

pub async fn members(
    State(state): State<ApiState>,
    PathId(group): PathId<GroupId>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut errors = Errors::default();
    let page = input::page_query(&query, &mut errors);
    errors.finish()?;
    existing(&state, &group).await?;
    let result = state
        .app
        .store
        .list_members(&group, page.limit, page.cursor.as_deref())
        .await?;
    Ok(Json(PageView {
        items: result.items,
        next_cursor: result.next_cursor,
    })
    .into_response())
}
