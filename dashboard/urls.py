"""Dashboard pages, addressed by the team's public id; allauth's account pages at the site root."""

from django.urls import include, path

from dashboard import books, images, playground, projects, reports, team_settings, views, webhooks

team_patterns = [
    path("", views.overview, name="overview"),
    path("keys/", views.keys, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<str:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("keys/<str:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("keys/<str:key_id>/limits/", views.key_limits, name="key_limits"),
    path("billing/", reports.billing, name="billing"),
    path("billing/redeem/", reports.billing_redeem, name="billing_redeem"),
    path("billing/auto-recharge/", reports.billing_auto_recharge, name="billing_auto_recharge"),
    path("receipts/", reports.receipts, name="receipts"),
    path("receipts.csv", reports.receipts_csv, name="receipts_csv"),
    path("receipts/<str:receipt_id>/", reports.receipt_detail, name="receipt"),
    path("usage/", reports.usage, name="usage"),
    path("projects/", projects.projects, name="projects"),
    path("projects/<str:project_id>/", projects.project_detail, name="project"),
    path("projects/<str:project_id>/delete/", projects.project_delete, name="project_delete"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("invitations/<int:invitation_id>/resend/", views.invitation_resend, name="invitation_resend"),
    path("invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("images/", images.images, name="images"),
    path("images/<str:image_id>/", images.image_detail, name="image"),
    path("images/<str:image_id>/cancel/", images.image_cancel, name="image_cancel"),
    path("models/", views.models_page, name="models"),
    path("quickstart/", views.quickstart, name="quickstart"),
    path("playground/", playground.playground, name="playground"),
    path("playground/token/", playground.playground_token, name="playground_token"),
    path("playground/requests/<str:request_id>/receipt/", playground.playground_receipt, name="playground_receipt"),
    path("settings/", team_settings.team_settings, name="team_settings"),
    path("settings/transfer/", team_settings.team_transfer, name="team_transfer"),
    path("settings/delete/", team_settings.team_delete, name="team_delete"),
    path("settings/leave/", team_settings.team_leave, name="team_leave"),
    path("settings/webhooks/", webhooks.webhooks, name="webhooks"),
    path("settings/webhooks/new/", webhooks.webhook_create, name="webhook_create"),
    path("settings/webhooks/low-balance/", webhooks.low_balance, name="webhook_low_balance"),
    path("settings/webhooks/<str:endpoint_id>/", webhooks.webhook_detail, name="webhook"),
    path("settings/webhooks/<str:endpoint_id>/rotate/", webhooks.webhook_rotate, name="webhook_rotate"),
    path("settings/webhooks/<str:endpoint_id>/test/", webhooks.webhook_test, name="webhook_test"),
    path("settings/webhooks/<str:endpoint_id>/delete/", webhooks.webhook_delete, name="webhook_delete"),
    path(
        "settings/webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/",
        webhooks.webhook_redeliver,
        name="webhook_redeliver",
    ),
]

dashboard_patterns = [
    path("", views.home, name="home"),
    path("teams/new/", views.team_create, name="team_create"),
    path("operator/books/", books.books, name="books"),
    path("operator/books.csv", books.books_csv, name="books_csv"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("t/<str:team_id>/", include(team_patterns)),
]

# No app_name here: allauth's URL names (account_login, …) must stay un-namespaced.

urlpatterns = [
    path("", include((dashboard_patterns, "dashboard"))),
    path("", include("allauth.urls")),
]
