//! Saved payment sources: a card test token kept for a customer, charged later by its source
//! id, until it is detached.

use std::collections::HashMap;

use uuid::Uuid;

/// Sources kept at once; a save beyond it is refused.
pub const SOURCES_MAX: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Source {
    pub id: String,
    /// The test token that decides the outcome of every charge of this source.
    pub token: String,
    pub detached: bool,
}

#[derive(Debug, Default)]
pub struct Sources {
    by_id: HashMap<String, Source>,
    /// The client's id of each save, so a repeated save answers the first source.
    by_request: HashMap<Uuid, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceError {
    Unknown,
    Detached,
    Full,
}

impl Sources {
    /// The source saved under `request`, new or as first saved.
    pub fn save(&mut self, request: Uuid, token: &str) -> Result<(Source, bool), SourceError> {
        if let Some(id) = self.by_request.get(&request) {
            return self
                .by_id
                .get(id)
                .cloned()
                .map(|source| (source, false))
                .ok_or(SourceError::Unknown);
        }
        if self.by_id.len() >= SOURCES_MAX {
            return Err(SourceError::Full);
        }
        let source = Source {
            id: format!("sbx_src_{}", Uuid::new_v4().simple()),
            token: token.to_owned(),
            detached: false,
        };
        self.by_request.insert(request, source.id.clone());
        self.by_id.insert(source.id.clone(), source.clone());
        Ok((source, true))
    }

    /// Detaches a source; detaching it again succeeds.
    pub fn detach(&mut self, id: &str) -> Result<(), SourceError> {
        let source = self.by_id.get_mut(id).ok_or(SourceError::Unknown)?;
        source.detached = true;
        Ok(())
    }

    /// The token a charge of source `id` is decided by.
    pub fn token(&self, id: &str) -> Result<String, SourceError> {
        match self.by_id.get(id) {
            None => Err(SourceError::Unknown),
            Some(source) if source.detached => Err(SourceError::Detached),
            Some(source) => Ok(source.token.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_saved_once_per_request_and_charged_until_detached() {
        let mut sources = Sources::default();
        let request = Uuid::from_u128(7);
        let (first, new) = sources.save(request, "tok_sandbox_approved").unwrap();
        assert!(new);
        let (again, new) = sources.save(request, "tok_sandbox_approved").unwrap();
        assert!(!new);
        assert_eq!(again.id, first.id);
        assert_eq!(sources.token(&first.id).unwrap(), "tok_sandbox_approved");
        sources.detach(&first.id).unwrap();
        sources.detach(&first.id).unwrap();
        assert_eq!(sources.token(&first.id), Err(SourceError::Detached));
        assert_eq!(sources.token("sbx_src_none"), Err(SourceError::Unknown));
        assert_eq!(sources.detach("sbx_src_none"), Err(SourceError::Unknown));
    }
}
