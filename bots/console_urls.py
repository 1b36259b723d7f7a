"""The admin console at /console/ (views in bots/console.py); every URL is for platform admins only."""

from django.urls import path

from bots import console

app_name = "console"

urlpatterns = [
    path("", console.overview, name="overview"),
    path("providers/", console.providers, name="providers"),
    path("providers/<int:pk>/", console.provider_edit, name="provider"),
    path("providers/<int:pk>/test/", console.provider_test, name="provider-test"),
    path("providers/<int:pk>/delete/", console.provider_delete, name="provider-delete"),
    path("embedding-models/", console.embedding_models, name="embedding-models"),
    path("embedding-models/<int:pk>/default/", console.embedding_model_default, name="embedding-model-default"),
    path("embedding-models/<int:pk>/backend/", console.embedding_model_backend, name="embedding-model-backend"),
    path("rerankers/", console.rerankers, name="rerankers"),
    path("rerankers/<int:pk>/delete/", console.reranker_delete, name="reranker-delete"),
    path("defaults/", console.defaults, name="defaults"),
    path("users/", console.users, name="users"),
    path("users/<int:pk>/role/", console.user_role, name="user-role"),
    path("users/<int:pk>/active/", console.user_active, name="user-active"),
    path("users/<int:pk>/password/", console.user_password, name="user-password"),
    path("users/unlock/", console.unlock, name="unlock"),
    path("groups/", console.groups, name="groups"),
    path("groups/<int:pk>/members/", console.group_add_member, name="group-add-member"),
    path("groups/<int:pk>/members/<int:user_pk>/remove/", console.group_remove_member, name="group-remove-member"),
    path("groups/<int:pk>/builders/", console.group_can_build, name="group-can-build"),
    path("usage/", console.usage, name="usage"),
]
