//! Ids in the path, parsed into their domain types before a handler runs. A value that does not
//! parse is a 422 naming the parameter, the same on every route (an id that parses but does
//! not exist is a 404, from the handler).

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::ApiError;
use super::input::Errors;
use crate::domain::api_key::ApiKeyId;
use crate::domain::suppression::SuppressedAddress;
use crate::domain::{
    CategoryId, GroupId, NotificationId, ParseError, TemplateId, UserId, WebhookId,
};

/// A domain id that can appear in a path, under the parameter name the routes give it.
pub trait PathParam: Sized {
    const NAME: &'static str;
    fn parse(raw: &str) -> Result<Self, ParseError>;
}

impl PathParam for crate::domain::push::PushSubscriptionId {
    const NAME: &'static str = "subscription_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        crate::domain::push::PushSubscriptionId::parse(raw)
    }
}

impl PathParam for UserId {
    const NAME: &'static str = "user_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        UserId::parse(raw)
    }
}

impl PathParam for GroupId {
    const NAME: &'static str = "group_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        GroupId::parse(raw)
    }
}

impl PathParam for CategoryId {
    const NAME: &'static str = "category_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        CategoryId::parse(raw)
    }
}

impl PathParam for TemplateId {
    const NAME: &'static str = "template_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        TemplateId::parse(raw)
    }
}

impl PathParam for NotificationId {
    const NAME: &'static str = "id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        NotificationId::parse(raw)
    }
}

impl PathParam for WebhookId {
    const NAME: &'static str = "webhook_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        WebhookId::parse(raw)
    }
}

impl PathParam for ApiKeyId {
    const NAME: &'static str = "key_id";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        ApiKeyId::parse(raw)
    }
}

impl PathParam for SuppressedAddress {
    const NAME: &'static str = "address";
    fn parse(raw: &str) -> Result<Self, ParseError> {
        SuppressedAddress::parse(raw)
    }
}

/// One id from the path.
pub struct PathId<T>(pub T);

/// Two ids from the path (a group and a member), both checked before either is reported.
pub struct PathIds<A, B>(pub A, pub B);

/// The path's parameters, percent-decoded; one that does not decode to UTF-8 is a 400.
async fn raw_params(parts: &mut Parts) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|e| ApiError::Malformed(e.body_text()))
}

fn parse_one<T: PathParam>(params: &RawPathParams, errors: &mut Errors) -> Option<T> {
    let raw = params.iter().find(|(k, _)| *k == T::NAME).map(|(_, v)| v);
    match raw.map(T::parse) {
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            errors.add(T::NAME, e.0);
            None
        }
        None => {
            errors.add(T::NAME, "is missing");
            None
        }
    }
}

impl<S: Send + Sync, T: PathParam> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let mut errors = Errors::default();
        let id = parse_one::<T>(&params, &mut errors);
        errors.finish()?;
        Ok(Self(id.expect("no error, so parsed")))
    }
}

impl<S: Send + Sync, A: PathParam, B: PathParam> FromRequestParts<S> for PathIds<A, B> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let mut errors = Errors::default();
        let a = parse_one::<A>(&params, &mut errors);
        let b = parse_one::<B>(&params, &mut errors);
        errors.finish()?;
        Ok(Self(
            a.expect("no error, so parsed"),
            b.expect("no error, so parsed"),
        ))
    }
}
