//! The service's database role as production runs it: a login role of the cluster that is a
//! member of `payledger_app` (which may append to the event store, never change it), with the
//! tables' owner kept for migrations.

use api::Settings;

/// A login role of the cluster, member of `payledger_app` (created once; roles are shared by
/// every database of the cluster).
pub const SERVICE_ROLE: &str = "payledger_service_test";

/// `url` with its user replaced by `role`: `postgres://<user>@host:port/db` ->
/// `postgres://<role>@host:port/db`.
pub fn as_role(url: &str, role: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}@{host}")
}

/// Makes sure the roles exist (a migration makes the group role too; whichever comes first).
pub async fn ensure() {
    let settings = Settings::from_env();
    let admin = sqlx::PgPool::connect(&settings.database_url)
        .await
        .expect("the test server");
    for role in ["payledger_app NOLOGIN", &format!("{SERVICE_ROLE} LOGIN")] {
        sqlx::query(&format!(
            "DO $$ BEGIN
                 CREATE ROLE {role};
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ))
        .execute(&admin)
        .await
        .expect("role");
    }
    sqlx::query(&format!("GRANT payledger_app TO {SERVICE_ROLE}"))
        .execute(&admin)
        .await
        .expect("membership");
    admin.close().await;
}

/// Points `settings` at the service role, the owner kept for migrations.
pub fn connect_as_service(settings: &mut Settings) {
    let owner = settings.database_url.clone();
    settings.database_url = as_role(&owner, SERVICE_ROLE);
    settings.database_owner_url = Some(owner);
}
